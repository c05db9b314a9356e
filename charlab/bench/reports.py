"""The reports' experiments as named recipes on Chars74K, with and without augmentation, beside the reports' figures.

Each recipe (charlab.recipes `report_*`) trains from scratch on trainPart1.zip (15% of it held
out for validation, which picks best.pt) and is measured once on testPart1.zip: top-1,
macro-F1, case-insensitive accuracy, epochs, wall and CPU seconds. `--recipes` picks a subset,
`--epochs` caps every recipe's epochs (the big nets are slow on 2 CPU cores), `--aug both|on|off`.
Every row follows that one protocol. The default recipe is not a row: it trains on all of
trainPart1 and keeps its final weights (`bench accuracy`), a protocol these rows do not share.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .accuracy import chars74k_train_zip, train_and_measure

# What the reports (as summarised in the accuracy issue) said; None where no figure was given.
REPORT_FIGURES = {
    "report_lenet": "≈50% top-1",
    "report_lenet_mish": None,
    "report_lenet_temperature": None,
    "report_kaggle_cnn": "71.43% top-1",
    "report_efficientnet_b0": "the report's worst",
    "report_resnet18": None,
    "report_seed36_resnet": "macro-F1 0.878 (its own 36-class long-tail data)",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .accuracy import add_arguments as acc_args

    acc_args(p)  # --chars74k, --recipe (unused here), --epochs, --seed, --snapshot-seconds, --clock, --compare, --keep
    p.add_argument("--recipes", default=",".join(REPORT_FIGURES),
                   help="comma-separated report recipes (default: all)")
    p.add_argument("--aug", choices=["both", "on", "off"], default="both", help="with/without augmentation (default both)")


def run(args: argparse.Namespace) -> dict:
    from ..cli.train import _TqdmProgress
    from ..recipes import get_recipe
    from ..runs import new_run_id

    train_zip = chars74k_train_zip(args)
    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    for n in names:
        get_recipe(n)  # unknown names fail before any training
    variants = {"both": ["", "_noaug"], "on": [""], "off": ["_noaug"]}[args.aug]
    todo = [n + v for n in names for v in variants]
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="charlab-bench-reports-"))
    bar = _TqdmProgress(enabled=sys.stderr.isatty(), stream=sys.stderr)
    rows = []
    try:
        for name in todo:
            r = train_and_measure(name, train_zip, epochs=args.epochs, seed=args.seed,
                                  snapshot_seconds=args.snapshot_seconds, clock=args.clock,
                                  run_dir=root / new_run_id(name), progress=bar)
            base = name[:-len("_noaug")] if name.endswith("_noaug") else name
            rows.append({"recipe": name, "report": REPORT_FIGURES.get(base), **{k: r[k] for k in (
                "model", "augment", "epochs", "best_epoch", "params", "top1", "macro_f1", "case_insensitive",
                "train_seconds", "train_cpu_seconds")}})
            bar.write(f"{name}: top1 {r['top1']:.4f} macro-F1 {r['macro_f1']:.4f} ({r['train_seconds']:.0f} s)")
    finally:
        bar.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return {"rows": rows, "n_test": 930, "date": time.strftime("%Y-%m-%d"),
            "machine": f"{os.cpu_count()} cores", "load_avg_end": round(os.getloadavg()[0], 2)}
