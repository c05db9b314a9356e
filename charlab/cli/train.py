"""`python -m charlab train`: train one model, in the foreground or the background.

Every option defaults to None here so that TrainConfig stays the single source of
defaults: a flag given on the command line overrides --config JSON, which overrides
TrainConfig's own defaults.

Runs unchanged under `torchrun --nproc_per_node N python -m charlab train ...` (DDP).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from ..balance import BALANCE_STRATEGIES
from ..config import TrainConfig, from_dict
from ..errors import CharlabError
from .labels import add_option as add_labels_option
from ..optim import OPTIMIZERS, SCHEDULES
from ._progress import TqdmProgress as _TqdmProgress  # noqa: F401 (the name the bench modules import)

# flag -> (config section or None, field)
_FLAGS = {
    "source": ("data", "source"), "test_source": ("data", "test_source"), "image_size": ("data", "image_size"),
    "val_fraction": ("data", "val_fraction"), "model": ("model", "name"), "epochs": (None, "epochs"),
    "batch_size": (None, "batch_size"), "lr": (None, "lr"), "weight_decay": (None, "weight_decay"),
    "optimizer": (None, "optimizer"), "schedule": (None, "schedule"), "label_smoothing": (None, "label_smoothing"),
    "balance": (None, "balance"), "monitor": (None, "monitor"), "mode": (None, "mode"), "patience": (None, "patience"),
    "min_delta": (None, "min_delta"), "seed": (None, "seed"), "init_from": (None, "init_from"),
    "teacher": (None, "teacher"), "distill_weight": (None, "distill_weight"),
    "distill_temperature": (None, "distill_temperature"),
    "max_minutes": (None, "max_minutes"), "device": (None, "device"), "limit_batches": (None, "limit_batches"),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (foreground, background, or under torchrun)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = TrainConfig()
    p.add_argument("--config", metavar="JSON", help="a TrainConfig as JSON (e.g. a run's config.json); flags override it")
    p.add_argument("--recipe", metavar="NAME", help="start from a named recipe (charlab.recipes: default, report_kaggle_cnn, "
                   "…, each also NAME_noaug); flags override it")
    p.add_argument("--source", help=f"data source: synthetic, a folder/zip/csv, mnist:DIR, ... (default {d.data.source})")
    p.add_argument("--test-source", help="a separate test source, evaluated once at the end with the best weights")
    add_labels_option(p)
    p.add_argument("--model", help=f"model name (python -m charlab models / charlab.models.list_models(); default {d.model.name})")
    p.add_argument("--model-kwargs", metavar="JSON", help='extra builder options, e.g. \'{"activation": "mish"}\'')
    p.add_argument("--epochs", type=int, help=f"maximum epochs (default {d.epochs})")
    p.add_argument("--augment", metavar="PRESET", help=f"augmentation preset (default {d.augment.preset})")
    p.add_argument("--balance", choices=BALANCE_STRATEGIES.names(), help=f"class balancing (default {d.balance})")
    p.add_argument("--image-size", type=int, help=f"image side S (default {d.data.image_size})")
    p.add_argument("--val-fraction", type=float, help=f"validation share of the training data (default {d.data.val_fraction})")
    p.add_argument("--batch-size", type=int, help=f"default {d.batch_size}")
    p.add_argument("--lr", type=float, help=f"peak learning rate (default {d.lr})")
    p.add_argument("--weight-decay", type=float, help=f"default {d.weight_decay}")
    p.add_argument("--optimizer", choices=OPTIMIZERS.names(), help=f"default {d.optimizer}")
    p.add_argument("--schedule", choices=SCHEDULES.names(), help=f"default {d.schedule}")
    p.add_argument("--label-smoothing", type=float, help=f"default {d.label_smoothing}")
    p.add_argument("--monitor", help=f"validation metric for early stopping and best.pt (default {d.monitor})")
    p.add_argument("--mode", choices=["max", "min"], help=f"default {d.mode}")
    p.add_argument("--patience", type=int, help=f"early-stopping patience in epochs, 0 = off (default {d.patience})")
    p.add_argument("--min-delta", type=float, help=f"default {d.min_delta}")
    p.add_argument("--seed", type=int, help=f"default {d.seed}")
    p.add_argument("--init-from", metavar="CKPT", help="fine-tune from a checkpoint (its head is replaced when classes differ)")
    p.add_argument("--freeze-body", action="store_true", default=None, help="with --init-from: train the head only")
    p.add_argument("--teacher", metavar="CKPT", help="distil: also learn the softened predictions of this frozen "
                   "checkpoint (one model or an ensemble file from `charlab ensemble`) on the same augmented batches")
    p.add_argument("--distill-weight", type=float, help=f"with --teacher: the teacher's share of the loss (default {d.distill_weight})")
    p.add_argument("--distill-temperature", type=float, help=f"with --teacher: softmax temperature (default {d.distill_temperature})")
    p.add_argument("--max-minutes", type=float, help="wall-clock budget; stops cleanly after the epoch that crosses it")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help=f"default {d.device}")
    p.add_argument("--limit-batches", type=int, help="debug: at most N training batches per epoch")
    p.add_argument("--overfit-batch", action="store_true", default=None,
                   help="debug: train on one fixed batch (no shuffling, no augmentation) to check the model can fit it")
    p.add_argument("--run-dir", metavar="DIR", help="the run directory (default: a new one under --root)")
    p.add_argument("--root", help="where new run directories go (default $CHARLAB_RUNS, else runs/)")
    p.add_argument("--background", action="store_true", help="start the run as its own process and return at once")
    p.add_argument("--max-parallel", type=int, default=1, help="with --background: runs training at once; more wait queued (default 1)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last.pt")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=_train)


def build_config(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig defaults <- --config JSON <- flags."""
    if args.config:
        try:
            cfg = from_dict(TrainConfig, json.loads(Path(args.config).read_text()))
        except FileNotFoundError:
            raise CharlabError(f"--config {args.config}: no such file") from None
        except ValueError as e:
            raise CharlabError(f"--config {args.config} is not valid JSON: {e}") from None
    elif getattr(args, "recipe", None):
        from ..recipes import get_recipe

        cfg = get_recipe(args.recipe)
    else:
        cfg = TrainConfig()
    if args.init_from and args.model is None:  # fine-tuning keeps the checkpoint's architecture
        from ..training import init_model_config

        cfg.model = init_model_config(args.init_from)
    for flag, (section, name) in _FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            setattr(getattr(cfg, section) if section else cfg, name, value)
    if getattr(args, "labels", None) is not None:  # stored resolved ("auto" -> the file), so the run reproduces
        from ..labels import resolve

        found = resolve(args.labels, cfg.data.source)
        cfg.data.labels = str(Path(found).resolve()) if found else None
    if args.model_kwargs:
        try:
            cfg.model.kwargs = dict(json.loads(args.model_kwargs))
        except (ValueError, TypeError) as e:
            raise CharlabError(f"--model-kwargs must be a JSON object: {e}") from None
    if args.augment is not None:
        from ..augment import get_preset

        cfg.augment = get_preset(args.augment)
    if args.freeze_body:
        cfg.freeze_body = True
    if args.overfit_batch:
        cfg.overfit_batch = True
    cfg.validate()
    from ..models import MODELS

    MODELS.get(cfg.model.name)  # an unknown model fails here, naming the valid ones, before a run folder exists
    from ..data.sources import check_source

    # a missing source fails here, before a run folder exists
    check_source(cfg.data.source, cfg.data.test_source, cfg.data.side_inputs, cfg.data.side_dropout)
    return cfg


def _train(args: argparse.Namespace) -> int:
    from .. import runs
    from ..training import distributed, fit

    env = distributed.detect()
    root = args.root or runs.default_root()
    if args.resume:
        if not args.run_dir:
            raise CharlabError("--resume needs --run-dir (or use: python -m charlab runs resume RUN)")
        try:  # a resumed run keeps its own config; one that cannot resume says why before any work
            cfg = runs.check_resumable(args.run_dir)
        except CharlabError as e:
            runs.fail_unstarted(args.run_dir, e)
            raise
    else:
        cfg = build_config(args)

    if args.background:
        if env.enabled:
            raise CharlabError("--background cannot be combined with torchrun")
        info = runs.launch(cfg, root, max_parallel=args.max_parallel, run_dir=args.run_dir)
        _print({"run_dir": str(info.run_dir), "id": info.id, "state": info.state,
                "queue_position": info.queue_position}, args.json,
               f"{info.state}: {info.run_dir}  (follow it: python -m charlab runs list; stop: runs stop {info.id})")
        return 0

    run_dir = Path(args.run_dir) if args.run_dir else None
    if env.is_main and run_dir is None:
        run_dir = runs.create_run(cfg, root, state=runs.RUNNING)
    elif env.is_main and not args.resume and not runs.RunDir(run_dir).config.exists():
        run_dir = runs.create_run(cfg, run_dir=run_dir, state=runs.RUNNING)
    # with --json, stdout carries only the JSON result; the per-epoch lines go to stderr
    bar = _TqdmProgress(enabled=env.is_main and sys.stderr.isatty() and not args.json,
                        stream=sys.stderr if args.json else sys.stdout)
    log = bar.write if env.is_main else (lambda line: None)
    if env.is_main:
        log(f"run {run_dir}")
        _stop_on_signals(run_dir, log)
    finished = False
    try:
        result = fit(cfg, run_dir, progress=bar, resume=args.resume, log=log)
        finished = True
    finally:
        bar.close()
        distributed.shutdown(wait=finished)
        if env.is_main and run_dir is not None:
            runs.kick_queue(run_dir.parent)  # this slot is free: start the oldest queued run
    if env.is_main:
        best = f"{result.best:.4f}" if result.best is not None else "n/a"
        summary = {"run_dir": str(result.run_dir), "state": result.state, "stop_reason": result.stop_reason,
                   "epochs_run": len(result.history), "best_epoch": result.best_epoch, "monitor": result.monitor,
                   "best": result.best, "test_metrics": result.test_metrics, "notes": result.notes}
        _print(summary, args.json, f"{result.state} ({result.stop_reason}): best {result.monitor} {best} at epoch "
               f"{result.best_epoch}; {result.run_dir}")
    return 0


def _stop_on_signals(run_dir: Path, log) -> None:
    """SIGTERM and a first Ctrl-C ask for a clean stop (the STOP file: finish the batch,
    write last.pt, end `stopped`); a second Ctrl-C aborts."""
    from ..runs import RunDir

    run = RunDir(run_dir)

    def handler(signum, frame):
        if run.stop_requested() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        run.request_stop(signal.Signals(signum).name)
        log("stopping after this batch (Ctrl-C again to abort)" if signum == signal.SIGINT else "SIGTERM: stopping")

    try:
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (called from a notebook helper): keep the defaults
        pass


def _print(obj: dict, as_json: bool, text: str) -> None:
    print(json.dumps(obj, indent=2, default=str) if as_json else text, flush=True)
