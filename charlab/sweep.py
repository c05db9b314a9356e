"""Hyperparameter search with Optuna: every trial is an ordinary charlab run.

    from charlab.sweep import run_sweep
    result = run_sweep("../shared/data/chars74k_hnd/trainPart1.zip", trials=20, epochs=15)
    python -m charlab sweep --source DIR --trials 20 [--storage URL] [--epochs N] [--model NAME]

- Storage: an embedded SQLite file by default (`sqlite:///runs/sweeps.db`); the same call with
  a PostgreSQL URL (`postgresql://user:pw@host/db`) lets several machines work on one sweep,
  because Optuna hands each worker its own trials through that database.
- Pruning: after every epoch a `PruningCallback` reports the validation metric to the trial
  and, when Optuna's median pruner says the trial is behind, SETS `should_stop`; the trainer
  ends the run cleanly (best.pt and metrics intact) and only then, outside the training loop,
  the objective tells Optuna the trial was pruned. Nothing throws inside `fit`.
- Runs: each trial writes a normal run directory under `root`; its config.json carries
  `sweep` (the study name) and status.json carries `sweep` and `trial`, so the app's Runs page
  groups a sweep's trials and plots them like any other run.
- The search space (`SPACE`) is the few knobs that mattered while tuning the default recipe:
  learning rate, weight decay, label smoothing, batch size, augmentation preset, EMA decay,
  and the model's width and dropout where the model takes them.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .config import TrainConfig
from .errors import CharlabError

DEFAULT_STORAGE = "sqlite:///runs/sweeps.db"
Progress = Callable[[int, int, str], None]


@dataclass
class SweepResult:
    name: str  # the Optuna study name (also the runs' `sweep` field)
    storage: str
    best_value: Optional[float]  # best finished trial's monitored validation metric
    best_params: dict
    best_run: Optional[str]  # run directory of the best trial
    trials: list[dict] = field(default_factory=list)  # {number, state, value, params, run_dir}
    direction: str = "maximize"  # of the monitored metric


class PruningCallback:
    """Reports the monitored validation metric to an Optuna trial after every epoch and sets
    `should_stop` when the pruner says stop (Lightning style: decide here, act in fit)."""

    stop_reason = "pruned"

    def __init__(self, trial, monitor: str = "val_acc"):
        self.trial, self.monitor = trial, monitor
        self.should_stop = False
        self.pruned_at: Optional[int] = None

    def on_epoch_end(self, epoch: int, row: dict) -> None:
        value = row.get(self.monitor)
        if value is None or not math.isfinite(value):
            return
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            self.should_stop = True
            self.pruned_at = epoch


def suggest_config(trial, base: TrainConfig, *, tune_model: bool = True) -> TrainConfig:
    """`base` with the sampled hyperparameters applied (a fresh copy)."""
    from .augment import get_preset
    from .models import model_options

    cfg = copy.deepcopy(base)
    cfg.lr = trial.suggest_float("lr", 3e-4, 1e-2, log=True)
    cfg.weight_decay = trial.suggest_float("weight_decay", 1e-5, 1e-1, log=True)
    cfg.label_smoothing = trial.suggest_float("label_smoothing", 0.0, 0.2)
    cfg.batch_size = trial.suggest_categorical("batch_size", [32, 64, 128])
    own = cfg.augment.preset  # a recipe's own named preset (report36, …) stays a candidate
    preset = trial.suggest_categorical("augment", ["light", "strong"] + (
        [own] if own not in ("light", "strong", "none", "custom") else []))
    if preset != cfg.augment.preset:
        cfg.augment = get_preset(preset)
    cfg.ema_decay = trial.suggest_categorical("ema_decay", [0.0, 0.99, 0.995, 0.998])
    if tune_model:
        options = model_options(cfg.model.name)
        kwargs = dict(cfg.model.kwargs)
        if "width" in options:
            kwargs["width"] = trial.suggest_categorical("width", [16, 24, 32, 48])
        if "dropout" in options:
            kwargs["dropout"] = trial.suggest_float("dropout", 0.0, 0.5)
        cfg.model.kwargs = kwargs
    return cfg


def _storage_url(storage: str) -> str:
    """Create the folder of a relative SQLite file (Optuna does not), and say what a bad URL is."""
    if storage.startswith("sqlite:///"):
        path = storage[len("sqlite:///"):]
        if path and path != ":memory:":
            Path(path).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    elif "://" not in storage:
        raise CharlabError(f"--storage must be a database URL such as {DEFAULT_STORAGE} or "
                           f"postgresql://user:password@host/db, got {storage!r}")
    return storage


def open_study(name: str, storage: str = DEFAULT_STORAGE, *, direction: str = "maximize",
               n_startup_trials: int = 3, n_warmup_steps: int = 2, seed: Optional[int] = None):
    """Create or join the Optuna study `name` in `storage` (joining is how several machines share it)."""
    try:
        import optuna
    except ImportError:  # pragma: no cover - optuna is in requirements.txt
        raise CharlabError("the sweep needs optuna (pip install -r requirements.txt)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=n_warmup_steps)
    sampler = optuna.samplers.TPESampler(seed=seed)
    try:
        return optuna.create_study(study_name=name, storage=_storage_url(storage), direction=direction,
                                   pruner=pruner, sampler=sampler, load_if_exists=True)
    except (ImportError, ModuleNotFoundError) as e:
        raise CharlabError(f"storage {storage!r} needs a database driver that is not installed: {e}") from None
    except Exception as e:  # SQLAlchemy's OperationalError & co: a wrong URL, host or password
        if type(e).__name__ in ("OperationalError", "ArgumentError", "NoSuchModuleError"):
            raise CharlabError(f"cannot open sweep storage {storage!r}: {str(e).splitlines()[0]}") from None
        raise


def default_sweep_name(base: TrainConfig) -> str:
    return f"sweep-{base.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_sweep(source: str, trials: int, *, storage: str = DEFAULT_STORAGE, name: Optional[str] = None,
              epochs: Optional[int] = None, model: Optional[str] = None, base: Optional[TrainConfig] = None,
              root: str | os.PathLike = "runs", seed: int = 0, tune_model: bool = True, splits=None,
              progress: Optional[Progress] = None, log: Optional[Callable[[str], None]] = None) -> SweepResult:
    """Run `trials` Optuna trials of `base` (default: the default recipe) on `source`.

    Each trial trains one run directory under `root` with `fit`; the value it returns to
    Optuna is the best value of the config's monitored VALIDATION metric (never test).
    Calling again with the same `name` and `storage` continues the study (and several
    processes or machines may do so at once).
    """
    import optuna

    from .data import load_splits
    from .runs import create_run, new_run_id, update_status
    from .training import fit

    if trials < 1:
        raise CharlabError(f"--trials must be at least 1, got {trials}")
    say = log or (lambda line: None)
    base = copy.deepcopy(base) if base is not None else TrainConfig()
    base.data.source = source
    if epochs is not None:
        base.epochs = epochs
    if model is not None:
        from .models import MODELS

        MODELS.get(model)  # unknown name -> the list of valid ones, before any work
        if model != base.model.name:
            base.model.name, base.model.kwargs = model, {}
    base.validate()
    if base.data.val_fraction <= 0:
        raise CharlabError("a sweep needs a validation split to rank and prune trials (val_fraction > 0)")
    name = name or default_sweep_name(base)
    direction = "maximize" if base.mode == "max" else "minimize"
    study = open_study(name, storage, direction=direction, seed=seed)
    if splits is None:
        splits = load_splits(base.data, progress=progress)  # loaded once, shared by every trial
    root = Path(root)
    done = [0]

    def objective(trial) -> float:
        cfg = suggest_config(trial, base, tune_model=tune_model)
        cfg.sweep = name
        # status.json says sweep and trial from the start, so the Runs page groups the trial while it trains
        run_dir = create_run(cfg, root, state="running", sweep=name)
        update_status(run_dir, trial=trial.number)
        trial.set_user_attr("run_dir", str(run_dir))
        cb = PruningCallback(trial, cfg.monitor)

        def prog(d: int, t: int, msg: str) -> None:
            if progress is not None:
                progress(done[0] * 1000 + int(1000 * d / max(t, 1)), trials * 1000, f"trial {trial.number}: {msg}")

        res = fit(cfg, run_dir, splits=splits, progress=prog, callbacks=[cb])
        update_status(run_dir, sweep=name, trial=trial.number, pruned=cb.should_stop)
        done[0] += 1
        value = res.best
        say(f"trial {trial.number}: {cfg.monitor} {value if value is not None else float('nan'):.4f}"
            f"{' (pruned at epoch %d)' % cb.pruned_at if cb.should_stop else ''} {trial.params} -> {run_dir}")
        if cb.should_stop:
            raise optuna.TrialPruned()  # after fit has returned: the run is complete on disk
        if value is None:
            raise CharlabError(f"trial {trial.number} produced no {cfg.monitor}")
        return value

    study.optimize(objective, n_trials=trials, catch=(CharlabError,))
    return summarize(study, storage)


def summarize(study, storage: str) -> SweepResult:
    rows = []
    for t in study.trials:
        rows.append({"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": dict(t.params),
                     "run_dir": t.user_attrs.get("run_dir")})
    try:
        best = study.best_trial
    except ValueError:  # no trial finished (all pruned or failed)
        best = None
    return SweepResult(name=study.study_name, storage=storage, best_value=best.value if best else None,
                       best_params=dict(best.params) if best else {},
                       best_run=best.user_attrs.get("run_dir") if best else None, trials=rows,
                       direction=study.direction.name.lower())


def sweep_summary(name: str, storage: str = DEFAULT_STORAGE) -> SweepResult:
    """The state of an existing sweep (for the CLI's --show and the app)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=name, storage=_storage_url(storage))
    except KeyError:
        raise CharlabError(f"no sweep named {name!r} in {storage}") from None
    return summarize(study, storage)


def ensemble_ref(result: SweepResult, k: int = 3) -> str:
    """The best `k` finished trials as one ensemble reference ("runA+runB+runC"), which eval,
    predict and the app's Errors and Draw pages accept like a single checkpoint."""
    from .predict import ENSEMBLE_SEP

    done = [t for t in result.trials if t["state"] == "complete" and t["value"] is not None and t["run_dir"]]
    if not done:
        raise CharlabError(f"sweep {result.name} has no finished trial yet")
    ranked = sorted(done, key=lambda t: t["value"], reverse=result.direction == "maximize")
    return ENSEMBLE_SEP.join(t["run_dir"] for t in ranked[:max(1, k)])


def as_dict(result: SweepResult) -> dict:
    return dataclasses.asdict(result)
