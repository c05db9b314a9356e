"""Digit-sum task: end to end (the report's simple CNN, ResNet-18) vs structured (per-digit model, summed).

For each digit source (the synthetic digits, and Chars74K's digits when ../shared/data is
present) it composes k-digit images whose test composites use only held-out digits, then:
- end to end: trains `simple_cnn` (the report's 13.5% baseline) and `resnet18` on the sums;
- structured: a per-digit classifier reads each slot and the digits are added
  (charlab.digitsum). For the synthetic source it trains on more synthetic digits (--digit-n
  per class, never the test digits: those come from the source's independent test stream); for
  Chars74K it fine-tunes that synthetic-digit model on the whole Chars74K training split (all 62
  classes, 40 images each: the letters teach the writers' strokes too; the digit slots then read
  only the digit classes), since its 40 training digits per class alone are too few.
End-to-end models get a wall-clock budget (--minutes); digit models a fixed number of epochs.
Figures: sum accuracy on test composites built only from held-out digits.
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from . import CHARS74K

CHARS74K_TRAIN = CHARS74K / "trainPart1.zip"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--k", type=int, default=4, help="digits per image (default 4)")
    p.add_argument("--n", type=int, default=6000, help="train composites (default 6000)")
    p.add_argument("--test-n", type=int, default=1000, help="test composites (default 1000)")
    p.add_argument("--minutes", type=float, default=3.0, help="training budget per model (default 3)")
    p.add_argument("--epochs", type=int, default=30, help="epoch cap per model (default 30)")
    p.add_argument("--digit-model", default="kaggle_cnn", help="per-digit classifier (default kaggle_cnn)")
    p.add_argument("--digit-n", type=int, default=1000, help="synthetic training digits per class (default 1000)")
    p.add_argument("--digit-epochs", type=int, default=6, help="epochs of the synthetic digit model (default 6)")
    p.add_argument("--finetune-epochs", type=int, default=30, help="epochs of the Chars74K fine-tuning (default 30)")
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


def _synthetic_digit_model(args, work: Path):
    """The per-digit model trained on synthetic digits (once per run; Chars74K fine-tunes it)."""
    from ..training import fit

    train_source = f"synthetic:classes=digits,n={args.digit_n}"
    cfg = _config(train_source, args.digit_model, args, "strong")
    cfg.epochs, cfg.max_minutes = args.digit_epochs, None
    return cfg, fit(cfg, work / "synthetic_digits", splits=_digit_splits(train_source))


def _structured(name: str, digit_source: str, source: str, args, work: Path) -> dict:
    """Train (or fine-tune) the per-digit model, then read the test composites slot by slot."""
    from ..config import DataConfig
    from ..data import load_splits
    from ..digitsum import predict_structured
    from ..predict import predictor_from_model
    from ..runs import RunDir
    from ..training import fit

    t0 = time.perf_counter()
    synthetic_model = RunDir(work / "synthetic_digits").best
    if name == "synthetic":
        cfg, res = _synthetic_digit_model(args, work)
    else:
        if not synthetic_model.exists():  # the transfer starts from the synthetic digit model
            _synthetic_digit_model(args, work)
        cfg = _config(digit_source, args.digit_model, args, "strong")
        cfg.epochs, cfg.max_minutes, cfg.init_from = args.finetune_epochs, None, str(synthetic_model)
        cfg.lr = cfg.lr / 3  # fine-tuning: a gentler peak than training from scratch
        # every training image trains (no validation carved out): fixed epochs, nothing to early-stop
        cfg.data.val_fraction, cfg.monitor, cfg.mode = 0.0, "train_loss", "min"
        res = fit(cfg)
    predictor = predictor_from_model(res.model, res.classes, cfg.data, res.input_shape, cfg)
    test = load_splits(DataConfig(source=source)).test
    report = predict_structured(predictor, test).report(test)
    return {f"{name}_structured_sum_acc": report["sum_accuracy"],
            f"{name}_structured_marginal_sum_acc": report["marginal_sum_accuracy"],
            f"{name}_structured_digit_acc": report["digit_accuracy"],
            f"{name}_structured_seconds": round(time.perf_counter() - t0, 1)}


def run(args: argparse.Namespace) -> dict:
    import tempfile

    from ..training import fit

    digit_sources = {"synthetic": "synthetic:classes=digits"}
    if CHARS74K_TRAIN.exists():
        digit_sources["chars74k"] = str(CHARS74K_TRAIN)
    out: dict = {"k": args.k, "n_train": args.n, "n_test": args.test_n, "minutes_per_model": args.minutes}
    work = Path(tempfile.mkdtemp(prefix="charlab-digitsum-"))  # the synthetic digit model, for the transfer
    try:
        for name in [s.strip() for s in args.sources.split(",") if s.strip() in digit_sources]:
            digit_source = digit_sources[name]
            source = f"digitsum:k={args.k},n={args.n},test_n={args.test_n},from={digit_source}"
            for model in [m.strip() for m in args.e2e_models.split(",") if m.strip()]:
                t0 = time.perf_counter()
                res = fit(_config(source, model, args, "light"))
                out[f"{name}_e2e_{model}_sum_acc"] = res.test_metrics["test_acc"]
                out[f"{name}_e2e_{model}_seconds"] = round(time.perf_counter() - t0, 1)
            out.update(_structured(name, digit_source, source, args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out
