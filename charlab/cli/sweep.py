"""`python -m charlab sweep`: an Optuna hyperparameter search whose trials are normal runs.

    python -m charlab sweep --source ../shared/data/chars74k_hnd/trainPart1.zip --trials 20 --epochs 15 --workers 2
    python -m charlab sweep --source DIR --trials 10 --name mysweep --storage postgresql://u:pw@host/db
    python -m charlab sweep --show mysweep

--workers N runs N trials at once in worker processes that share the study (--trials is the
total). The default storage, a journal file, is safe for the workers of one machine; to share a
sweep across machines, run the same command (same --name) on each with one PostgreSQL URL.
A killed worker's trial is failed and re-queued once (on a database by its heartbeat).
"""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import CharlabError


def register(sub: argparse._SubParsersAction) -> None:
    from ..sweep import DEFAULT_STORAGE, GRACE_BEATS, HEARTBEAT_S  # light: sweep.py imports optuna and torch lazily

    p = sub.add_parser("sweep", help="hyperparameter search (Optuna); every trial is a run",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", help="data source to tune on (its validation split ranks and prunes trials)")
    p.add_argument("--trials", type=int, default=10, help="trials in all, split over the --workers (default 10)")
    p.add_argument("--storage", default=DEFAULT_STORAGE,
                   help=f"a journal file (default {DEFAULT_STORAGE}) or a database URL: postgresql://… to share "
                        "across machines; sqlite:///… still opens older sweeps (one process at a time)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="trials run at once, each in its own process (default 1)")
    p.add_argument("--heartbeat", type=int, default=HEARTBEAT_S, metavar="S",
                   help=f"database storages: seconds between a trial's heartbeats; {GRACE_BEATS} missed = its worker "
                        f"is dead (default {HEARTBEAT_S})")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one of --workers' processes
    p.add_argument("--base-config", help=argparse.SUPPRESS)  # the parent's base config (JSON) for --worker
    p.add_argument("--name", help="study name; an existing one is continued (default: sweep-MODEL-TIMESTAMP)")
    p.add_argument("--epochs", type=int, help="epochs per trial (default: the recipe's)")
    p.add_argument("--model", help="model to tune (default: the recipe's)")
    p.add_argument("--recipe", default="default", help="recipe the search starts from (default: default)")
    p.add_argument("--no-model-options", action="store_true", help="do not tune the model's width/dropout")
    p.add_argument("--root", default="runs", help="where the trials' run directories go (default runs/)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    p.add_argument("--show", metavar="NAME", help="print the trials of an existing sweep and exit")
    p.add_argument("--ensemble", type=int, metavar="K",
                   help="also print the best K trials as one ensemble reference (runA+runB+…) for eval/predict/the app")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=_sweep)


def _print_result(res, as_json: bool, ensemble: int | None = None) -> None:
    from ..sweep import as_dict, ensemble_ref

    ref = ensemble_ref(res, ensemble) if ensemble else None
    if as_json:
        print(json.dumps({**as_dict(res), **({"ensemble": ref} if ref else {})}, indent=2))
        return
    print(f"sweep {res.name} ({res.storage}): {len(res.trials)} trials")
    for t in res.trials:
        value = f"{t['value']:.4f}" if t["value"] is not None else "-"
        print(f"  #{t['number']:<3} {t['state']:<9} {value:>7}  {t['params']}  {t['run_dir'] or ''}")
    if res.best_value is not None:
        print(f"best: {res.best_value:.4f} {res.best_params} -> {res.best_run}")
    if ref:
        print(f"ensemble of the best {ensemble}: {ref}")


def _sweep(args: argparse.Namespace) -> int:
    from ..recipes import get_recipe
    from ..sweep import run_sweep, sweep_summary
    from .train import _TqdmProgress

    if args.show:
        _print_result(sweep_summary(args.show, args.storage), args.json, args.ensemble)
        return 0
    if not args.source:
        raise CharlabError("--source is required (a folder, zip, csv, synthetic, mnist:DIR, …)")
    if args.worker:
        return _worker(args)
    bar = _TqdmProgress(enabled=sys.stderr.isatty() and not args.json, stream=sys.stderr)
    try:
        res = run_sweep(args.source, args.trials, storage=args.storage, name=args.name, epochs=args.epochs,
                        model=args.model, base=get_recipe(args.recipe), root=args.root, seed=args.seed,
                        tune_model=not args.no_model_options, workers=args.workers, heartbeat_s=args.heartbeat,
                        progress=bar, log=bar.write if not args.json else (lambda line: print(line, file=sys.stderr)))
    finally:
        bar.close()
    _print_result(res, args.json, args.ensemble)
    return 0


def _worker(args: argparse.Namespace) -> int:
    """One of --workers' processes: join the named study and run --trials trials of it, quietly."""
    from ..config import TrainConfig, from_dict
    from ..sweep import work_on

    if not (args.name and args.base_config):
        raise CharlabError("--worker is started by --workers N, with the study's --name and a --base-config")
    with open(args.base_config) as f:
        base = from_dict(TrainConfig, json.load(f))
    work_on(args.name, args.storage, base, args.trials, root=args.root, seed=args.seed,
            tune_model=not args.no_model_options, heartbeat_s=args.heartbeat,
            log=lambda line: print(line, file=sys.stderr, flush=True))
    return 0
