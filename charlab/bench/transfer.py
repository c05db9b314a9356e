"""Transfer on digits: pretrain on synthetic digits, fine-tune on Chars74K digits (new head, full or frozen body) vs from scratch.

`--classes 62` runs the same comparison on all 62 classes (pretrain on the default synthetic
source, fine-tune on the whole of trainPart1, test on testPart1's 930 images).

The reports pretrained on MNIST and fine-tuned elsewhere with a new head. Offline, the
digits-only pretraining source is charlab's synthetic generator
(`synthetic:classes=digits,n=N`); the target is the other digit source, Chars74K's digits
(trainPart1 classes 0-9: 400 images, 15% held out for validation; testPart1's 150 digits
measured once at the end). Every variant trains the same recipe for the same epochs:

- `scratch`: random weights;
- `finetune_new_head`: the pretrained body, a freshly initialised head, everything trains;
- `frozen_body_new_head`: the pretrained body frozen, only the fresh head trains;
- `finetune_kept_head`: the pretrained net as it is (same class names, so the head transfers too).

"Epochs to converge" is the first epoch whose validation accuracy reaches 95% of that run's
best (`epochs_to_95`), beside the best epoch itself.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ..data.classes import CHARS62
from .accuracy import add_chars74k_argument, chars74k_train_zip, _measure, _probs, restrict_classes

DIGITS = list(CHARS62[:10])


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_chars74k_argument(p)
    p.add_argument("--classes", choices=["digits", "62"], default="digits", help="digits (default) or all 62")
    p.add_argument("--pretrain-source", help="source to pretrain on (default synthetic:classes=digits,n=300; "
                   "with --classes 62: synthetic)")
    p.add_argument("--recipe", default="default", help="recipe of every run (default: default)")
    p.add_argument("--pretrain-epochs", type=int, default=15, help="default 15")
    p.add_argument("--epochs", type=int, default=15, help="fine-tuning / scratch epochs (default 15)")
    p.add_argument("--seed", type=int, default=0)


def _epochs_to(history: list[dict], share: float = 0.95) -> int | None:
    best = max((r.get("val_acc", 0.0) for r in history), default=0.0)
    return next((r["epoch"] for r in history if r.get("val_acc", 0.0) >= share * best), None)


def run(args: argparse.Namespace) -> dict:
    from ..checkpoint import load_checkpoint, save_checkpoint
    from ..cli.train import _TqdmProgress
    from ..config import DataConfig
    from ..data import Splits, load_source, stratified_split
    from ..errors import CharlabError
    from ..models import replace_head
    from ..recipes import get_recipe
    from ..runs import RunDir
    from ..training import fit

    train_zip = chars74k_train_zip(args)
    bar = _TqdmProgress(enabled=sys.stderr.isatty(), stream=sys.stderr)
    root = Path(tempfile.mkdtemp(prefix="charlab-bench-transfer-"))
    rows = []
    try:
        # 1. pretrain on the other source (digits only by default)
        names = DIGITS if args.classes == "digits" else list(CHARS62)
        source = args.pretrain_source or ("synthetic:classes=digits,n=300" if args.classes == "digits" else "synthetic")
        pre_cfg = get_recipe(args.recipe, source=source, epochs=args.pretrain_epochs, seed=args.seed)
        t0 = time.perf_counter()
        pre = fit(pre_cfg, root / "pretrain", progress=bar)
        pretrain = {"source": source, "epochs": len(pre.history), "best_val_acc": pre.best,
                    "train_seconds": round(time.perf_counter() - t0, 1)}
        if list(pre.classes) != names:
            raise CharlabError(f"{source} does not have the classes {''.join(names)} (it has {''.join(pre.classes)})")
        # the same checkpoint with a freshly initialised head: "a new head" although the class names agree
        ck = load_checkpoint(RunDir(root / "pretrain").best)
        fresh = replace_head(ck.model, len(names))
        save_checkpoint(root / "pretrained_new_head.pt", fresh, ck.config, ck.classes, ck.input_shape, epoch=ck.epoch)

        # 2. the target: Chars74K (its digits by default)
        cfg0 = DataConfig(source=str(train_zip), image_size=pre_cfg.data.image_size)
        full = restrict_classes(load_source(str(train_zip), cfg0, split="train", progress=bar), names)
        test = restrict_classes(load_source(str(train_zip), cfg0, split="test", progress=bar), names)
        tr, va, _ = stratified_split(full.labels.numpy(), 0.15, args.seed)
        splits = Splits(train=full.subset(tr), val=full.subset(va), test=test, notes=[])
        variants = {
            "scratch": {},
            "finetune_new_head": {"init_from": str(root / "pretrained_new_head.pt")},
            "frozen_body_new_head": {"init_from": str(root / "pretrained_new_head.pt"), "freeze_body": True},
            "finetune_kept_head": {"init_from": str(RunDir(root / "pretrain").best)},
        }
        for name, over in variants.items():
            cfg = get_recipe(args.recipe, source=str(train_zip), epochs=args.epochs, seed=args.seed, **over)
            t0, c0 = time.perf_counter(), time.process_time()
            res = fit(cfg, root / name, splits=splits, progress=bar)
            m = _measure(_probs(res.model, test, names), test, names)
            rows.append({"variant": name, "test_top1": m["top1"], "test_macro_f1": m["macro_f1"],
                         "best_val_acc": round(res.best, 4) if res.best is not None else None,
                         "best_epoch": res.best_epoch, "epochs_to_95": _epochs_to(res.history),
                         "val_acc_epoch1": round(res.history[0]["val_acc"], 4) if res.history else None,
                         "train_seconds": round(time.perf_counter() - t0, 1),
                         "train_cpu_seconds": round(time.process_time() - c0, 1)})
            bar.write(f"{name}: test {m['top1']:.4f}, epochs to 95% of best val {rows[-1]['epochs_to_95']}")
    finally:
        bar.close()
        shutil.rmtree(root, ignore_errors=True)
    return {"recipe": args.recipe, "pretrain": pretrain, "target": f"{train_zip} ({args.classes})",
            "n_train": len(splits.train), "n_val": len(splits.val), "n_test": len(test), "epochs": args.epochs,
            "rows": rows, "date": time.strftime("%Y-%m-%d")}
