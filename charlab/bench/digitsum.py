"""Digit-sum task: end to end (the report's simple CNN, ResNet-18) vs structured (per-digit model, summed).

For each digit source (the synthetic digits, and Chars74K's digits when ../shared/data is
present) it composes k-digit images whose test composites use only held-out digits, then:
- end to end: trains `simple_cnn` (the report's 13.5% baseline) and `resnet18` on the sums;
- structured: trains a per-digit classifier on the digit source's own training digits and
  sums the slots' digit distributions (charlab.digitsum).
Every model gets the same wall-clock budget (--minutes). Figures: test sum accuracy.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

CHARS74K_TRAIN = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "chars74k_hnd" / "trainPart1.zip"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--k", type=int, default=4, help="digits per image (default 4)")
    p.add_argument("--n", type=int, default=6000, help="train composites (default 6000)")
    p.add_argument("--test-n", type=int, default=1000, help="test composites (default 1000)")
    p.add_argument("--minutes", type=float, default=3.0, help="training budget per model (default 3)")
    p.add_argument("--epochs", type=int, default=30, help="epoch cap per model (default 30)")
    p.add_argument("--digit-model", default="kaggle_cnn", help="per-digit classifier (default kaggle_cnn)")
    p.add_argument("--e2e-models", default="simple_cnn,resnet18", help="end-to-end models, comma-separated")
    p.add_argument("--sources", default="synthetic,chars74k", help="digit sources: synthetic, chars74k")


def _config(source: str, model: str, args, augment: str):
    from ..augment import get_preset
    from ..config import DataConfig, ModelConfig, TrainConfig

    return TrainConfig(data=DataConfig(source=source), model=ModelConfig(name=model), augment=get_preset(augment),
                       epochs=args.epochs, max_minutes=args.minutes, patience=0)


def _digit_splits(digit_source: str):
    """The digit source's train/val/test with only the classes 0-9 (Chars74K holds letters too)."""
    from ..data import load_splits
    from ..config import DataConfig

    splits = load_splits(DataConfig(source=digit_source))
    names = [str(d) for d in range(10)]
    for part in ("train", "val", "test"):
        ds = getattr(splits, part)
        if ds is not None:
            setattr(splits, part, ds.select_classes(names))
    return splits


def run(args: argparse.Namespace) -> dict:
    from ..data import load_splits
    from ..digitsum import predict_structured
    from ..predict import predictor_from_model
    from ..training import fit

    digit_sources = {"synthetic": "synthetic:classes=digits"}
    if CHARS74K_TRAIN.exists():
        digit_sources["chars74k"] = str(CHARS74K_TRAIN)
    out: dict = {"k": args.k, "n_train": args.n, "n_test": args.test_n, "minutes_per_model": args.minutes}
    for name in [s.strip() for s in args.sources.split(",") if s.strip() in digit_sources]:
        digit_source = digit_sources[name]
        source = f"digitsum:k={args.k},n={args.n},test_n={args.test_n},from={digit_source}"
        for model in [m.strip() for m in args.e2e_models.split(",") if m.strip()]:
            t0 = time.perf_counter()
            res = fit(_config(source, model, args, "light"))
            out[f"{name}_e2e_{model}_sum_acc"] = res.test_metrics["test_acc"]
            out[f"{name}_e2e_{model}_seconds"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        cfg = _config(digit_source, args.digit_model, args, "strong")
        res = fit(cfg, splits=_digit_splits(digit_source))
        predictor = predictor_from_model(res.model, res.classes, cfg.data, res.input_shape, cfg)
        test = load_splits(cfg.data.__class__(source=source)).test
        report = predict_structured(predictor, test).report(test)
        out[f"{name}_structured_sum_acc"] = report["sum_accuracy"]
        out[f"{name}_structured_naive_sum_acc"] = report["naive_sum_accuracy"]
        out[f"{name}_structured_digit_acc"] = report["digit_accuracy"]
        out[f"{name}_structured_seconds"] = round(time.perf_counter() - t0, 1)
    return out
