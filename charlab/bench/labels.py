"""Label audit on real data: a full A<->B swap found by a reference, fixed and retrained; complementary digits recovered; 20% noise.

Every set is a modified COPY of a class-per-folder zip (the images moved between class folders),
written to a temp folder and removed afterwards; the source is never touched.

1. swap: trainPart1 with folders A and B exchanged, audited with --reference (default
   checkpoints/synthetic.pt, which never saw Chars74K). Reports the first pair and the diagnosis,
   then accepts the diagnosed fix into an override file, and trains the default recipe on the
   swapped data, the fixed data (swapped + overrides) and the clean data: test accuracy of each.
2. complementary: the digits 0-9 of trainPart1, every image moved to a random other digit's
   folder; diagnosis and share of true labels recovered with the reference and without (out of fold).
3. noise: the digits with 20% of images moved to a random other digit; precision and recall of
   the suspects (out of fold) against the images actually moved.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath
from typing import Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CHARS74K = ROOT.parent / "shared" / "data" / "chars74k_hnd"


def relabelled_zip(src: str | Path, dst: str | Path, dataset, new_labels: Sequence[int],
                   keep: Optional[Sequence[int]] = None) -> Path:
    """Copy a class-per-folder zip to `dst`, moving image i into the folder of class new_labels[i].

    `dataset` is the zip loaded by charlab (its source paths and labels say which folder holds
    which class); `keep` limits the copy to those images (e.g. the digits). Entries keep their
    bytes, so content hashes match the original's."""
    rel = dataset.source_paths()
    labels = dataset.labels.numpy()
    folder = {}  # class index -> the folder path its images sit in
    for r, y in zip(rel, labels):
        folder.setdefault(int(y), str(PurePosixPath(r).parent))
    new_labels = np.asarray(new_labels)
    chosen = range(len(rel)) if keep is None else keep
    dst = Path(dst)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for i in chosen:
            name = f"{folder[int(new_labels[i])]}/{PurePosixPath(rel[i]).name}"
            zout.writestr(name, zin.read(rel[i]))
    return dst


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", default=str(CHARS74K / "trainPart1.zip"))
    p.add_argument("--test", default=str(CHARS74K / "testPart1.zip"))
    p.add_argument("--reference", default=str(ROOT / "checkpoints" / "synthetic.pt"))
    p.add_argument("--parts", default="swap,retrain,complementary,noise",
                   help="comma-separated: swap, retrain, complementary, noise")
    p.add_argument("--epochs", type=int, default=None, help="retrain epochs (default: the default recipe's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--retrain", default="clean,swapped,fixed", help="which of clean, swapped, fixed to retrain")


def _audit(source: str, reference: Optional[str], folds: int = 3, seed: int = 0):
    from ..config import DataConfig, ModelConfig, TrainConfig
    from ..augment import get_preset
    from ..data import load_source
    from ..predict import load_predictor
    from ..suspects import audit, out_of_fold_probs, reference_probs

    if reference:
        pred = load_predictor(reference)
        ds = load_source(source, pred.data_config_for(source), split="train")
        probs, _ = reference_probs(pred, ds)
        from ..lookalike import for_audit

        return ds, audit(probs, ds, reference=reference, seed=seed, lookalikes=for_audit(pred))
    else:  # `charlab suspects --model lenet --augment light --batch-size 32` (400 images: ~8 steps per epoch)
        cfg = TrainConfig(data=DataConfig(source=source, seed=seed), model=ModelConfig(name="lenet"), epochs=12,
                          batch_size=32, seed=seed, ema_decay=0.0, augment=get_preset("light"), patience=0)
        ds = load_source(source, cfg.data, split="train")
        probs = out_of_fold_probs(cfg, ds, folds=folds)
    return ds, audit(probs, ds, reference=reference, seed=seed)


def _train_test_acc(source: str, test: str, labels: Optional[str], epochs: Optional[int], seed: int) -> float:
    from ..config import DataConfig
    from ..recipes import get_recipe
    from ..training import fit

    cfg = get_recipe("default")
    cfg.data = DataConfig(source=source, test_source=test, labels=labels, seed=seed)
    cfg.seed = seed
    if epochs:
        cfg.epochs = epochs
    res = fit(cfg, None)
    return float(res.test_metrics["test_acc"]) if res.test_metrics else float("nan")


def run(args: argparse.Namespace) -> dict:
    from ..config import DataConfig
    from ..data import load_source
    from ..labels import LabelOverrides

    parts = set(args.parts.split(","))
    out: dict = {}
    tmp = Path(tempfile.mkdtemp(prefix="charlab-bench-labels-"))
    try:
        full = load_source(args.train, DataConfig(), split="train")
        y = full.labels.numpy()
        rng = np.random.default_rng(args.seed)
        if parts & {"swap", "retrain"}:
            a, b = full.classes.index("A"), full.classes.index("B")
            sw = y.copy()
            sw[y == a], sw[y == b] = b, a
            swapped = str(relabelled_zip(args.train, tmp / "swapped.zip", full, sw))
            t = time.perf_counter()
            ds, rep = _audit(swapped, args.reference, seed=args.seed)
            out["swap_seconds"] = round(time.perf_counter() - t, 1)
            p0 = rep.pairs.iloc[0]
            out["swap_first_pair"] = f"{p0['given']} -> {p0['likely']}: {p0['count']} ({p0['given_to_likely']} / {p0['likely_to_given']})"
            out["swap_kind"] = rep.diagnosis.kind
            out["swap_text"] = rep.diagnosis.text
            if "retrain" in parts:
                ov = LabelOverrides(path=tmp / "fix.json", source=swapped)
                sw_rows = rep.suspects[rep.suspects["given"].isin(["A", "B"]) & rep.suspects["likely"].isin(["A", "B"])]
                ov.decide([{"hash": r.hash, "path": r.source_path, "action": "relabel", "label": r.likely,
                            "given": r.given} for r in sw_rows.itertuples()], what="apply the diagnosed swap")
                ov.save()
                truth = _truth(ds, full)  # ds: the swapped copy as the reference read it
                fixed_true = sum(1 for r in sw_rows.itertuples() if truth[r.index] == ds.classes.index(r.likely))
                out["swap_fix_relabelled"] = f"{len(sw_rows)} images, {fixed_true} to their true class"
                for name, src, lab in (("clean", args.train, None), ("swapped", swapped, None),
                                       ("fixed", swapped, str(ov.path))):
                    if name not in args.retrain.split(","):
                        continue
                    t = time.perf_counter()
                    out[f"test_acc_{name}"] = round(_train_test_acc(src, args.test, lab, args.epochs, args.seed), 4)
                    out[f"train_minutes_{name}"] = round((time.perf_counter() - t) / 60, 2)
        digits = np.flatnonzero(y < 10)
        yd = y[digits]
        if "complementary" in parts:
            comp = y.copy()
            comp[digits] = (yd + rng.integers(1, 10, len(yd))) % 10
            src = str(relabelled_zip(args.train, tmp / "complementary.zip", full, comp, keep=digits))
            for tag, ref in (("reference", args.reference), ("out_of_fold", None)):
                t = time.perf_counter()
                ds, rep = _audit(src, ref, seed=args.seed)
                truth = _truth(ds, full)
                likely = rep.diagnosis.likely
                out[f"complementary_{tag}_kind"] = rep.diagnosis.kind
                out[f"complementary_{tag}_recovered"] = round(float((likely == truth).mean()), 4)
                out[f"complementary_{tag}_seconds"] = round(time.perf_counter() - t, 1)
            out["complementary_text"] = rep.diagnosis.text
        if "noise" in parts:
            noisy = y.copy()
            moved = rng.random(len(yd)) < 0.2
            noisy[digits[moved]] = (yd[moved] + rng.integers(1, 10, moved.sum())) % 10
            src = str(relabelled_zip(args.train, tmp / "noisy.zip", full, noisy, keep=digits))
            ds, rep = _audit(src, None, seed=args.seed)
            truth = _truth(ds, full)
            wrong = truth != ds.labels.numpy()
            flagged = np.zeros(len(ds), bool)
            flagged[rep.suspects["index"].to_numpy()] = True
            out["noise_moved"] = int(wrong.sum())
            out["noise_kind"] = rep.diagnosis.kind
            out["noise_suspects"] = int(flagged.sum())
            out["noise_precision"] = round(float((flagged & wrong).sum() / max(flagged.sum(), 1)), 4)
            out["noise_recall"] = round(float((flagged & wrong).sum() / max(wrong.sum(), 1)), 4)
            likely_ok = [full.classes.index(lk) == truth[i] for i, lk in zip(rep.suspects["index"], rep.suspects["likely"])
                         if wrong[i]]
            out["noise_likely_right"] = round(float(np.mean(likely_ok)) if likely_ok else float("nan"), 4)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _truth(ds, full) -> np.ndarray:
    """True label (in ds's class order) of each image of a relabelled copy, matched by content hash."""
    by_hash = {h: full.classes[int(c)] for h, c in zip(full.hashes, full.labels.numpy())}
    return np.array([ds.classes.index(by_hash[h]) for h in ds.hashes])
