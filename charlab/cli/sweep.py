"""`python -m charlab sweep`: an Optuna hyperparameter search whose trials are normal runs.

    python -m charlab sweep --source ../shared/data/chars74k_hnd/trainPart1.zip --trials 20 --epochs 15
    python -m charlab sweep --source DIR --trials 10 --name mysweep --storage postgresql://u:pw@host/db
    python -m charlab sweep --show mysweep

Run the same command (same --name and --storage) on several machines to share one sweep.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import CharlabError


def register(sub: argparse._SubParsersAction) -> None:
    from ..sweep import DEFAULT_STORAGE  # light: sweep.py imports optuna and torch lazily

    p = sub.add_parser("sweep", help="hyperparameter search (Optuna); every trial is a run",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", help="data source to tune on (its validation split ranks and prunes trials)")
    p.add_argument("--trials", type=int, default=10, help="trials this process runs (default 10)")
    p.add_argument("--storage", default=DEFAULT_STORAGE,
                   help=f"Optuna storage URL (default {DEFAULT_STORAGE}; postgresql://… to share across machines)")
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
    bar = _TqdmProgress(enabled=sys.stderr.isatty() and not args.json, stream=sys.stderr)
    try:
        res = run_sweep(args.source, args.trials, storage=args.storage, name=args.name, epochs=args.epochs,
                        model=args.model, base=get_recipe(args.recipe), root=args.root, seed=args.seed,
                        tune_model=not args.no_model_options, progress=bar,
                        log=bar.write if not args.json else (lambda line: print(line, file=sys.stderr)))
    finally:
        bar.close()
    _print_result(res, args.json, args.ensemble)
    return 0
