"""Hyperparameter search with Optuna: every trial is an ordinary charlab run.

    from charlab.sweep import run_sweep
    result = run_sweep("../shared/data/chars74k_hnd/trainPart1.zip", trials=20, epochs=15, workers=2)
    python -m charlab sweep --source DIR --trials 20 [--workers N] [--storage PATH|URL] [--epochs N]

- Storage, as Optuna's FAQ advises: SQLite locks ("database is locked") when several
  processes write at once, so the default is a journal file (`runs/sweeps.journal`, Optuna's
  JournalStorage with a JournalFileBackend: an append-only log under a file lock) for the
  workers of one machine, and any RDB URL (`postgresql://user:pw@host/db`) for workers on
  several machines, because the database server hands each worker its own trials. Old
  `sqlite:///…` studies still open (they are fine for one process at a time).
- Workers: `workers=N` starts N processes (`python -m charlab sweep … --trials share`) that
  join one study, each with its own sampler seed; `trials` is the total across them. Several
  machines join the same study by running the same command with the same name and RDB URL.
- Dead workers: a trial whose worker was killed must not stay RUNNING. On an RDB, each trial
  beats a heartbeat (`heartbeat_s`); the next worker to ask for a trial fails the stale one
  (Optuna's `fail_stale_trials`). A journal file has no heartbeat, so on it each worker
  (and the `workers=N` parent when a child dies) fails the RUNNING trials of dead worker
  processes of this host. Either way `RetryHeartbeatStaleTrialCallback` (formerly
  RetryFailedTrialCallback) re-queues the trial once with the same hyperparameters, and its
  run directory is marked failed with the reason.
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
import datetime
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .config import TrainConfig
from .errors import CharlabError

DEFAULT_STORAGE = "runs/sweeps.journal"  # a journal file: safe for the parallel workers of one machine
HEARTBEAT_S = 60  # RDB storages: a trial beats this often; one silent for GRACE_BEATS beats is dead
GRACE_BEATS = 3
UNCLAIMED_S = 600.0  # a RUNNING trial that no worker claimed for this long was asked by a process that died
MAX_RETRY = 1  # a dead worker's trial is re-queued this many times
Progress = Callable[[int, int, str], None]


@dataclass
class SweepResult:
    name: str  # the Optuna study name (also the runs' `sweep` field)
    storage: str
    best_value: Optional[float]  # best finished trial's monitored validation metric
    best_params: dict
    best_run: Optional[str]  # run directory of the best trial
    trials: list[dict] = field(default_factory=list)  # {number, state, value, params, run_dir, retry_of}
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


def _is_url(storage: str) -> bool:
    return "://" in storage


def _storage_url(storage: str) -> str:
    """Create the folder of a relative SQLite or journal file (Optuna does not); refuse what cannot be one."""
    if storage.startswith("sqlite:///"):
        path = storage[len("sqlite:///"):]
        if path and path != ":memory:":
            Path(path).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        return storage
    if _is_url(storage):
        return storage
    p = Path(storage).expanduser()
    if p.is_dir():
        raise CharlabError(f"--storage {storage} is a folder; give a journal file such as {DEFAULT_STORAGE}, "
                           "or a database URL such as postgresql://user:password@host/db")
    if p.is_file():
        with open(p, "rb") as f:
            if f.read(16) == b"SQLite format 3\x00":
                raise CharlabError(f"{storage} is an SQLite database; open it as sqlite:///{storage}")
    p.resolve().parent.mkdir(parents=True, exist_ok=True)
    return str(p)


def make_storage(storage: str, heartbeat_s: int = HEARTBEAT_S):
    """A storage string -> Optuna storage: a database URL -> RDBStorage with heartbeats (a
    stale trial is failed and re-queued); any other string -> a JournalStorage file."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    url = _storage_url(storage)
    if not _is_url(url):
        return JournalStorage(JournalFileBackend(url))
    hb = max(1, int(heartbeat_s))
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.9; they are what we need
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(url, heartbeat_interval=hb, grace_period=GRACE_BEATS * hb,
                          heartbeat_stale_trial_callback=_DeadTrialCallback(),
                          engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None)


class _DeadTrialCallback:
    """Optuna's retry (re-queue once with the same parameters), plus the trial's run directory
    marked failed with the reason, so the Runs page does not wait for a dead worker."""

    def __init__(self):
        import optuna
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.retry = RetryHeartbeatStaleTrialCallback(MAX_RETRY)

    def __call__(self, study, trial) -> None:
        self.retry(study, trial)
        run_dir = trial.user_attrs.get("run_dir")
        worker = trial.user_attrs.get("worker") or {}
        from .runs import ACTIVE, FAILED, RunDir, read_status, update_status

        if run_dir and RunDir(run_dir).status.is_file():
            if read_status(run_dir).get("state") in ACTIVE:  # as written: the dead worker never ended it
                update_status(run_dir, state=FAILED, ended=time.time(),
                              error_tail=f"the sweep worker (pid {worker.get('pid')} on {worker.get('host')}) died "
                                         f"during trial {trial.number}; the trial was failed and re-queued")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def fail_dead_trials(study) -> list[int]:
    """Fail (and re-queue once) the RUNNING trials whose worker is gone; returns their numbers.

    RDB storages judge by Optuna's heartbeat. A journal file has none: there a trial's worker
    is dead when it ran on this host and its pid is gone (a journal file is local by nature),
    or when no worker claimed the trial within UNCLAIMED_S of its start.
    """
    import optuna
    from optuna.storages._heartbeat import is_heartbeat_enabled  # public fail_stale_trials' own test
    from optuna.trial import TrialState

    storage = study._storage
    if is_heartbeat_enabled(storage):
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        return sorted(before - after - _still_finished_ok(study, before - after))
    failed = []
    host, now = socket.gethostname(), datetime.datetime.now()
    callback = _DeadTrialCallback()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        w = t.user_attrs.get("worker") or {}
        if w.get("trial") == t.number:  # claimed by a worker (a re-queued copy carries its predecessor's)
            dead = w.get("host") == host and not _pid_alive(int(w.get("pid", 0)))
        else:
            dead = t.datetime_start is not None and (now - t.datetime_start).total_seconds() > UNCLAIMED_S
        if not dead:
            continue
        try:
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker failed it first
        failed.append(t.number)
        callback(study, copy.deepcopy(storage.get_trial(t._trial_id)))
    return failed


def _still_finished_ok(study, numbers: set) -> set:
    """Of the trials that left RUNNING meanwhile, those that finished on their own (not failed)."""
    from optuna.trial import TrialState

    return {t.number for t in study.get_trials(deepcopy=False) if t.number in numbers and t.state != TrialState.FAIL}


def open_study(name: str, storage: str = DEFAULT_STORAGE, *, direction: str = "maximize",
               n_startup_trials: int = 3, n_warmup_steps: int = 2, seed: Optional[int] = None,
               heartbeat_s: int = HEARTBEAT_S):
    """Create or join the Optuna study `name` in `storage` (joining is how several workers share it)."""
    try:
        import optuna
    except ImportError:  # pragma: no cover - optuna is in requirements.txt
        raise CharlabError("the sweep needs optuna (pip install -r requirements.txt)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=n_warmup_steps)
    sampler = optuna.samplers.TPESampler(seed=seed)
    for attempt in range(5):
        try:
            return optuna.create_study(study_name=name, storage=make_storage(storage, heartbeat_s),
                                       direction=direction, pruner=pruner, sampler=sampler, load_if_exists=True)
        except (ImportError, ModuleNotFoundError) as e:
            raise CharlabError(f"storage {storage!r} needs a database driver that is not installed: {e}") from None
        except Exception as e:  # SQLAlchemy's OperationalError & co: a wrong URL, host or password
            kind = type(e).__name__
            if kind in ("IntegrityError", "ProgrammingError") and attempt < 4:
                time.sleep(0.5 * (attempt + 1))  # two workers creating the same tables or study at once
                continue
            if kind in ("OperationalError", "ArgumentError", "NoSuchModuleError", "IntegrityError", "ProgrammingError"):
                raise CharlabError(f"cannot open sweep storage {storage!r}: {str(e).splitlines()[0]}") from None
            raise


def default_sweep_name(base: TrainConfig) -> str:
    return f"sweep-{base.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_sweep(source: str, trials: int, *, storage: str = DEFAULT_STORAGE, name: Optional[str] = None,
              epochs: Optional[int] = None, model: Optional[str] = None, base: Optional[TrainConfig] = None,
              root: str | os.PathLike = "runs", seed: int = 0, tune_model: bool = True, splits=None,
              workers: int = 1, heartbeat_s: int = HEARTBEAT_S,
              progress: Optional[Progress] = None, log: Optional[Callable[[str], None]] = None) -> SweepResult:
    """Run `trials` Optuna trials of `base` (default: the default recipe) on `source`.

    Each trial trains one run directory under `root` with `fit`; the value it returns to
    Optuna is the best value of the config's monitored VALIDATION metric (never test).
    `workers` > 1 runs that many trials at once, in worker processes that share the study
    (`trials` is the total). Calling again with the same `name` and `storage` continues the
    study (and several processes or machines may do so at once).
    """
    if trials < 1:
        raise CharlabError(f"--trials must be at least 1, got {trials}")
    if workers < 1:
        raise CharlabError(f"--workers must be at least 1, got {workers}")
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
    # Created here, before any worker starts: workers that create tables or the study at once can collide.
    study = open_study(name, storage, direction=direction, seed=seed, heartbeat_s=heartbeat_s)
    if workers > 1:
        if splits is not None:
            raise CharlabError("worker processes load their data themselves; pass splits only with workers=1")
        _run_workers(study, base, trials, workers, storage=storage, root=root, seed=seed, tune_model=tune_model,
                     heartbeat_s=heartbeat_s, progress=progress, log=log or (lambda line: None))
    else:
        _work(study, base, trials, root=root, tune_model=tune_model, splits=splits, progress=progress,
              log=log or (lambda line: None))
    return summarize(study, storage)


def _work(study, base: TrainConfig, trials: int, *, root, tune_model: bool, splits, progress, log) -> None:
    """This process runs `trials` trials of `study`, one after another."""
    import optuna

    from .data import load_splits
    from .runs import RUNNING, create_run, update_status
    from .training import fit

    name = study.study_name
    if splits is None:
        splits = load_splits(base.data, progress=progress)  # loaded once, shared by every trial
    root = Path(root)
    done = [0]
    me = {"pid": os.getpid(), "host": socket.gethostname()}

    def objective(trial) -> float:
        # First of all claim the trial, so fail_dead_trials can tell this worker's death from a slow start.
        trial.set_user_attr("worker", {**me, "trial": trial.number})
        cfg = suggest_config(trial, base, tune_model=tune_model)
        cfg.sweep = name
        # status.json says sweep and trial from the start, so the Runs page groups the trial while it trains
        run_dir = create_run(cfg, root, state=RUNNING, sweep=name)
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
        log(f"trial {trial.number}: {cfg.monitor} {value if value is not None else float('nan'):.4f}"
            f"{' (pruned at epoch %d)' % cb.pruned_at if cb.should_stop else ''} {trial.params} -> {run_dir}")
        if cb.should_stop:
            raise optuna.TrialPruned()  # after fit has returned: the run is complete on disk
        if value is None:
            raise CharlabError(f"trial {trial.number} produced no {cfg.monitor}")
        return value

    for _ in range(trials):
        # A journal file has no heartbeat: before asking, fail and re-queue the trials of dead
        # workers, so the next ask takes up a re-queued one (an RDB's optimize does this itself).
        for number in fail_dead_trials(study):
            log(f"trial {number}: its worker died; failed and re-queued")
        try:
            study.optimize(objective, n_trials=1, catch=(CharlabError,))
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError) as e:
            if "Cannot tell" not in str(e) and not isinstance(e, optuna.exceptions.UpdateFinishedTrialError):
                raise
            # Our heartbeat came too late (a starved machine) and another worker failed and
            # re-queued the trial; its copy runs again, and this worker goes on.
            log(f"a trial of this worker was failed by another worker (late heartbeat): {e}")


def _shares(trials: int, workers: int) -> list[int]:
    """`trials` split over `workers` as evenly as it goes (no worker gets none)."""
    workers = min(workers, trials)
    return [trials // workers + (i < trials % workers) for i in range(workers)]


def _done_by(study, pids: set[int]) -> int:
    """Trials that the worker processes `pids` finished (complete, pruned, failed on their own);
    a trial whose worker died does not count: its re-queued copy does, once it runs."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    requeued = {t.system_attrs.get("failed_trial") for t in trials} - {None}
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sum(1 for t in trials if t.state in finished and t.number not in requeued
               and (t.user_attrs.get("worker") or {}).get("pid") in pids
               and (t.user_attrs.get("worker") or {}).get("trial") == t.number)


def _run_workers(study, base: TrainConfig, trials: int, workers: int, *, storage: str, root, seed: int,
                 tune_model: bool, heartbeat_s: int, progress, log) -> None:
    """Start worker processes that share `study`, show their progress, and make up for dead ones:
    their trials are re-queued, and new workers run what they left (re-queued copies first)."""
    from .config import to_dict
    from .io import atomic_write_json

    from .data import load_splits

    load_splits(base.data)  # a bad source fails here, once; and the workers find the data in the disk cache
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    pids: set[int] = set()
    with tempfile.TemporaryDirectory(prefix="charlab-sweep-") as tmp:
        cfg_path = Path(tmp) / "base.json"
        atomic_write_json(cfg_path, to_dict(base))
        missing = trials
        for round_ in range(1 + MAX_RETRY + 1):
            procs = []
            for i, share in enumerate(_shares(missing, workers)):
                cmd = [sys.executable, "-m", "charlab", "sweep", "--worker", "--base-config", str(cfg_path),
                       "--source", base.data.source, "--trials", str(share), "--storage", storage,
                       "--name", study.study_name, "--root", str(root), "--heartbeat", str(heartbeat_s),
                       # each worker its own sampler seed, or their first random trials would be the same
                       "--seed", str(seed + 1000 * (round_ * workers + i + 1))]
                if not tune_model:
                    cmd.append("--no-model-options")
                procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL))
            pids |= {p.pid for p in procs}
            log(f"{len(procs)} workers (pids {', '.join(str(p.pid) for p in procs)}) on sweep {study.study_name}")
            try:
                while any(p.poll() is None for p in procs):
                    if progress is not None:
                        progress(min(_done_by(study, pids), trials), trials, f"{len(procs)} workers")
                    time.sleep(1.0)
            except KeyboardInterrupt:
                for p in procs:
                    p.terminate()
                for p in procs:
                    p.wait()
                raise
            dead = [p for p in procs if p.returncode != 0]
            for p in dead:
                log(f"worker pid {p.pid} exited with status {p.returncode}")
            for number in fail_dead_trials(study):
                log(f"trial {number}: its worker died; failed and re-queued")
            before, missing = missing, trials - _done_by(study, pids)
            if not dead or missing <= 0:
                break
            if missing == before:  # the workers fail before finishing anything: more of them would too
                raise CharlabError(f"all {len(procs)} sweep workers failed without finishing a trial; see their output above")
    if progress is not None:
        progress(min(_done_by(study, pids), trials), trials, "done")


def work_on(name: str, storage: str, base: TrainConfig, trials: int, *, root, seed: int, tune_model: bool,
            heartbeat_s: int = HEARTBEAT_S, progress=None, log=None) -> SweepResult:
    """One worker process of a sweep: join the study `name` and run `trials` trials of it."""
    direction = "maximize" if base.mode == "max" else "minimize"
    study = open_study(name, storage, direction=direction, seed=seed, heartbeat_s=heartbeat_s)
    _work(study, base, trials, root=root, tune_model=tune_model, splits=None, progress=progress,
          log=log or (lambda line: None))
    return summarize(study, storage)


def summarize(study, storage: str) -> SweepResult:
    rows = []
    for t in study.trials:
        rows.append({"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": dict(t.params),
                     "run_dir": t.user_attrs.get("run_dir") if t.state.name != "WAITING" else None,
                     "retry_of": t.system_attrs.get("failed_trial")})  # a dead worker's trial, re-queued
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
    if not _is_url(storage) and not Path(storage).expanduser().is_file():
        raise CharlabError(f"no sweep named {name!r}: there is no sweep journal at {storage}")
    try:
        study = optuna.load_study(study_name=name, storage=make_storage(storage))
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
