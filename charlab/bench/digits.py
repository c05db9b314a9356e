"""Evaluation across datasets: 62-class models on a real digit set, unrestricted and restricted, against a digits model.

The digit set is Chars74K's own test digits (testPart1's Sample001-010: 150 images), copied into a
temporary folder source. Each 62-class checkpoint is measured twice:
- as it is: its predictions into the 52 letter classes the data lacks count as errors, and
  macro-F1 averages over the 10 digit classes the data holds (`macro_f1`); `macro_f1_seen` is
  the earlier definition, which also averaged over every class merely predicted;
- `--restrict`ed to the data's classes (`eval --restrict`, the Errors page's switch): the letters'
  probabilities are dropped before the argmax.
The obvious alternative is a model that only knows digits: trained here on trainPart1's digits
(400 images, its own 15% validation split), measured on the same 150 test digits.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import zipfile
from pathlib import Path

from .. import metrics
from .accuracy import add_chars74k_argument, chars74k_train_zip

ROOT = Path(__file__).resolve().parents[2]


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_chars74k_argument(p)
    p.add_argument("--checkpoints", nargs="+", default=[str(ROOT / "checkpoints" / "synthetic.pt"),
                                                          str(ROOT / "checkpoints" / "default.pt")],
                   help="62-class models to measure (default: the shipped synthetic.pt and default.pt)")
    p.add_argument("--epochs", type=int, default=15, help="epochs of the digits-only model (default 15)")


def _digit_folder(zip_path: Path, out: Path) -> Path:
    """Sample001-010 of a Chars74K zip -> out/<digit>/<file>.png (a folder source)."""
    from ..data.classes import chars74k_class_name

    with zipfile.ZipFile(zip_path) as zf:
        for name in zf.namelist():
            folder = Path(name).parent.name
            label = chars74k_class_name(folder)
            if name.lower().endswith(".png") and label.isdigit() and len(label) == 1 and folder != label:
                target = out / label / Path(name).name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(name))
    return out


def _figures(interp) -> dict:
    s = interp.summary()
    seen = metrics.macro_f1(interp.targets, interp.preds, interp.num_classes)
    r = interp.restricted().summary()
    return {"n": s["n"], "accuracy": round(s["accuracy"], 4), "macro_f1": round(s["macro_f1"], 4),
            "macro_f1_seen": round(seen, 4), "absent_predictions": s["absent_predictions"],
            "restricted_accuracy": round(r["accuracy"], 4), "restricted_macro_f1": round(r["macro_f1"], 4)}


def run(args: argparse.Namespace) -> dict:
    from ..config import DataConfig, TrainConfig
    from ..interpret import Interpretation, load_split
    from ..predict import load_predictor, predictor_from_model
    from ..training import fit

    train_zip = chars74k_train_zip(args)
    tmp = Path(tempfile.mkdtemp(prefix="charlab-digits-"))
    out: dict = {}
    try:
        test_dir = _digit_folder(train_zip.with_name("testPart1.zip"), tmp / "test_digits")
        for ck in args.checkpoints:
            pred = load_predictor(ck)
            ds, _ = load_split(pred, str(test_dir), "test")
            out[Path(ck).stem] = _figures(Interpretation.from_predictor(pred, ds, "test"))
        train_dir = _digit_folder(train_zip, tmp / "train_digits")
        cfg = TrainConfig(data=DataConfig(source=str(train_dir)), epochs=args.epochs)
        res = fit(cfg, run_dir=None)
        pred = predictor_from_model(res.model, res.classes, cfg.data, res.input_shape, cfg)
        ds, _ = load_split(pred, str(test_dir), "test")
        out["chars74k_digits_model"] = {**_figures(Interpretation.from_predictor(pred, ds, "test")),
                                        "model": cfg.model.name, "epochs": args.epochs}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
