"""Class balancing on a long-tail 36-class Chars74K subset: none vs oversample vs sampler vs loss weights (macro-F1).

The 36-class report (digits + capitals) oversampled its small classes with rotated and sheared
copies and reached macro-F1 0.878 on its own data. Here the same profile is cut from Chars74K's
trainPart1: classes 0-9 and A-Z, per-class counts from the synthetic source's long-tail
profile (`charlab.data.synthetic.class_counts`: exactly one class with a single image, ~60%
small, ~25% medium, ~15% full at 40), images drawn with a fixed seed. Validation is a
stratified 15% of that subset (a class with one image stays in train); the test split is
testPart1's 36 classes, balanced (15 each, 540 images), so macro-F1 weighs every class alike.

Each strategy trains the `report_seed36_resnet` recipe (its `report36` augmentation) with only
`balance` changed; `oversample` raises every class to the largest class (40, as the report
raised its classes to its 450), `loss` uses inverse-frequency and effective-number weights.
`--recipe default` runs the same table with charlab's default recipe.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..data.classes import CHARS62
from .accuracy import add_chars74k_argument, chars74k_train_zip, _measure, _probs, restrict_classes

CLASSES36 = list(CHARS62[:36])  # digits + capitals, as in the 36-class report
STRATEGIES = {  # name -> TrainConfig overrides
    "none": {"balance": "none"},
    "oversample": {"balance": "oversample", "balance_target": 40},
    "sampler": {"balance": "sampler"},
    "loss_inverse": {"balance": "loss", "balance_weights": "inverse"},
    "loss_effective": {"balance": "loss", "balance_weights": "effective"},
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_chars74k_argument(p)
    p.add_argument("--recipe", default="report_seed36_resnet", help="recipe whose balance is varied")
    p.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated subset of: " + ", ".join(STRATEGIES))
    p.add_argument("--epochs", type=int, default=30, help="epochs per run (default 30)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset, split and training (default 0)")


def longtail_splits(train_zip: Path, seed: int = 0, val_fraction: float = 0.15, progress=None):
    """(Splits of the long-tail 36-class subset, per-class train counts before the val split)."""
    from ..config import DataConfig
    from ..data import Splits, load_source, stratified_split
    from ..data.synthetic import class_counts

    cfg = DataConfig(source=str(train_zip))
    full = restrict_classes(load_source(str(train_zip), cfg, split="train", progress=progress), CLASSES36)
    test = restrict_classes(load_source(str(train_zip), cfg, split="test", progress=progress), CLASSES36)
    counts = class_counts(len(CLASSES36), 40, "longtail", seed)
    rng = np.random.default_rng([seed, 36])
    labels = full.labels.numpy()
    picked = np.concatenate([rng.choice(np.flatnonzero(labels == c), size=int(n), replace=False)
                             for c, n in enumerate(counts)])
    subset = full.subset(np.sort(picked))
    tr, va, _ = stratified_split(subset.labels.numpy(), val_fraction, seed)
    return Splits(train=subset.subset(tr), val=subset.subset(va), test=test, notes=[]), counts


def run(args: argparse.Namespace) -> dict:
    from ..cli.train import _TqdmProgress
    from ..errors import CharlabError
    from ..recipes import get_recipe
    from ..training import fit

    train_zip = chars74k_train_zip(args)
    names = [n.strip() for n in args.strategies.split(",") if n.strip()]
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise CharlabError(f"unknown strategies {', '.join(unknown)}; valid: {', '.join(STRATEGIES)}")
    bar = _TqdmProgress(enabled=sys.stderr.isatty(), stream=sys.stderr)
    splits, counts = longtail_splits(train_zip, args.seed, progress=bar)
    rows = []
    root = Path(tempfile.mkdtemp(prefix="charlab-bench-balance-"))
    try:
        for name in names:
            cfg = get_recipe(args.recipe, source=str(train_zip), epochs=args.epochs, seed=args.seed, **STRATEGIES[name])
            t0, c0 = time.perf_counter(), time.process_time()
            res = fit(cfg, root / name, splits=splits, progress=bar)
            m = _measure(_probs(res.model, splits.test, CLASSES36), splits.test, CLASSES36)
            per_class_small = _small_class_recall(res.model, splits.test, counts)
            rows.append({"strategy": name, "top1": m["top1"], "macro_f1": m["macro_f1"],
                         "recall_small_classes": per_class_small, "epochs": len(res.history),
                         "best_epoch": res.best_epoch, "notes": [n for n in res.notes if "oversampled" in n],
                         "train_seconds": round(time.perf_counter() - t0, 1),
                         "train_cpu_seconds": round(time.process_time() - c0, 1)})
            bar.write(f"{name}: macro-F1 {m['macro_f1']:.4f} top1 {m['top1']:.4f}")
    finally:
        bar.close()
        shutil.rmtree(root, ignore_errors=True)
    return {"recipe": args.recipe, "classes": 36, "train_counts": counts.tolist(),
            "n_train": len(splits.train), "n_val": len(splits.val), "n_test": len(splits.test),
            "report_macro_f1": 0.878, "rows": rows, "date": time.strftime("%Y-%m-%d")}


def _small_class_recall(model, test, counts: np.ndarray) -> float:
    """Mean test recall of the classes with at most 5 training images (where balancing matters)."""
    probs = _probs(model, test, CLASSES36)
    pred, y = probs.argmax(1).numpy(), test.labels.numpy()
    small = np.flatnonzero(counts <= 5)
    return round(float(np.mean([(pred[y == c] == c).mean() for c in small])), 4) if small.size else float("nan")
