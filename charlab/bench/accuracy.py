"""Default recipe on Chars74K: test top-1, macro-F1, case-insensitive accuracy, train time, top-1 at 120 s.

Trains a recipe (default: `default`, i.e. TrainConfig()) from scratch on trainPart1.zip and
measures the model it ends with on testPart1.zip (930 images), which never steers training.
The same run is also measured at a snapshot taken 120 s into training (the weights the
trainer would evaluate then: the EMA when the recipe averages), so one run answers both
"how good in 10 minutes" and "how good in the first 2".

Clocks. `train_seconds` and the 120 s snapshot are WALL time from the start of training (what
a user waits). On a shared machine wall time also measures the neighbours, so
`train_cpu_seconds` (this process) and the load average stand beside it. (CPU seconds divided by
the thread count are no wall clock: fit() changes its thread count with the load, epoch by
epoch.) `--clock cpu` makes the snapshot follow this process's CPU time instead.

Case-insensitive accuracy merges the look-alike groups in `LOOKALIKE_GROUPS` (c/C, o/O/0,
1/I/l, …): `case_gap_share` is the share of all errors that are confusions inside a group.

`--distill` (with `--members K`) then distils the K members' ensemble into one model of the
same recipe and seed (TrainConfig.teacher, charlab.training.distill), measured the same way;
its clock counts the members' training too, since the student needs them.

The obvious alternative, the Chars74K report's Kaggle CNN recipe, is trained in the same run
under the same protocol and reported under "compare" (`--compare none` skips it).
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

from . import CHARS74K

# Characters a lone handwritten glyph cannot tell apart by shape alone: case pairs whose
# lower case is a scaled capital (the EMNIST "balanced" merges), the round 0/O/o, and 1/I/l.
LOOKALIKE_GROUPS = ("cC", "kK", "mM", "oO0", "pP", "sS", "uU", "vV", "wW", "xX", "yY", "zZ", "1Il", "jJ", "iI")


def lookalike_index(classes: list[str]) -> np.ndarray:
    """Class index -> group index: classes in one LOOKALIKE_GROUPS entry share a group."""
    group = np.arange(len(classes))
    for g in LOOKALIKE_GROUPS:  # groups sharing a class (1Il, iI) merge: relabel both to the smaller id
        ids = {int(group[classes.index(c)]) for c in g if c in classes}
        if ids:
            group[np.isin(group, list(ids))] = min(ids)
    return group.astype(np.int64)


def case_insensitive_accuracy(y_true, y_pred, classes: list[str]) -> float:
    """Accuracy after merging each look-alike group into one class."""
    g = lookalike_index(list(classes))
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((g[y_true] == g[y_pred]).mean()) if len(y_true) else float("nan")


def restrict_classes(ds, names: list[str]):
    """The images of classes `names` only, relabelled 0..len(names)-1 in that order."""
    import torch

    from ..data import CharDataset

    keep = [ds.classes.index(n) for n in names]
    lookup = torch.full((ds.num_classes,), -1, dtype=torch.int64)
    lookup[keep] = torch.arange(len(keep))
    idx = torch.nonzero(lookup[ds.labels] >= 0).flatten()
    sub = ds.subset(idx)
    return CharDataset(images=sub.images, labels=lookup[sub.labels], classes=list(names), paths=sub.paths,
                       source=sub.source, hashes=sub.hashes)


class Snapshot:
    """Trainer callback: copies the evaluated weights (EMA or raw) the first time the chosen
    clock passes `seconds`. Decides only; reads nothing but the clock."""

    def __init__(self, seconds: float, clock: str = "wall"):
        self.seconds, self.clock = float(seconds), clock
        self.t0_wall, self.t0_cpu = time.perf_counter(), time.process_time()
        self.state: Optional[dict] = None
        self.taken_at: Optional[dict] = None
        self.batches = 0

    def elapsed(self) -> dict:
        return {"wall": time.perf_counter() - self.t0_wall, "cpu": time.process_time() - self.t0_cpu}

    def on_batch_end(self, model) -> None:
        self.batches += 1
        if self.state is not None:
            return
        t = self.elapsed()
        if t[self.clock] >= self.seconds:
            self.state = copy.deepcopy(getattr(model, "module", model).state_dict())
            self.taken_at = {**{k: round(v, 1) for k, v in t.items()}, "batch": self.batches}


def add_chars74k_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chars74k", default=str(CHARS74K),
                   help="folder holding trainPart1.zip and testPart1.zip")


def chars74k_train_zip(args: argparse.Namespace) -> Path:
    from ..errors import CharlabError

    path = Path(args.chars74k) / "trainPart1.zip"
    if not path.exists():
        raise CharlabError(f"Chars74K not found at {path} (pass --chars74k DIR or set CHARLAB_SHARED_DATA)")
    return path


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_chars74k_argument(p)
    p.add_argument("--recipe", default="default", help="recipe to train (charlab.recipes; default: default)")
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument("--snapshot-seconds", type=float, default=120.0, help="when to snapshot (default 120)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="clock of the snapshot: wall (default), or this process's CPU seconds")
    p.add_argument("--val-fraction", type=float, default=0.0,
                   help="validation share of trainPart1 (default 0: the final fit trains on all 2,480 images for "
                        "the recipe's fixed epochs and keeps the last; 0.15 is what the app does)")
    p.add_argument("--members", type=int, default=1,
                   help="also train seeds seed+1..seed+K-1 and report their probability-averaged ensemble")
    p.add_argument("--distill", action="store_true",
                   help="with --members K: also train one model of the recipe (seed --seed) that learns the K members' "
                        "ensemble's softened predictions, and report it with the members' training time included")
    p.add_argument("--distill-weight", type=float, default=None, help="the teacher's share of the loss (default: TrainConfig's)")
    p.add_argument("--distill-temperature", type=float, default=None, help="softmax temperature (default: TrainConfig's)")
    p.add_argument("--compare", metavar="RECIPE", default="report_kaggle_cnn",
                   help="the alternative trained in the same run (default report_kaggle_cnn, the reports' best; "
                        "none to skip)")
    p.add_argument("--keep", metavar="DIR", help="keep the run directories under DIR (default: a temp dir, removed)")


def _probs(model, test, classes):
    from ..training import evaluate

    return evaluate(model, test.images, test.labels, len(classes), return_probs=True, side=test.side)["probs"]  # N×C


def _measure(probs, test, classes) -> dict:
    from ..metrics import macro_f1

    pred = probs.argmax(1).numpy()
    y = test.labels.numpy()
    top1 = float((pred == y).mean())
    ci = case_insensitive_accuracy(y, pred, classes)
    return {"top1": round(top1, 4), "macro_f1": round(macro_f1(y, pred, len(classes)), 4),
            "case_insensitive": round(ci, 4),
            # share of the errors that are look-alike confusions (0.8 = 80% of the gap to 100%)
            "case_gap_share": round((ci - top1) / (1 - top1), 3) if top1 < 1 else 0.0}


def train_and_measure(recipe: str, train_zip: Path, *, epochs: Optional[int] = None, seed: int = 0,
                      snapshot_seconds: float = 120.0, clock: str = "wall", run_dir: Optional[Path] = None,
                      val_fraction: Optional[float] = None, progress=None, return_probs: bool = False,
                      distill: Optional[dict] = None) -> dict:
    """Train `recipe` on `train_zip` (its sibling testPart1.zip is the test split) and measure.

    `val_fraction=0` is the final fit: every training image is trained on, for the recipe's
    fixed number of epochs, and the last epoch's weights are kept (nothing to early-stop on).
    With `return_probs` the test probabilities come back under "_probs" (for ensembles).
    `distill`: TrainConfig fields to set ({"teacher": FILE, "distill_weight": …})."""
    import torch

    from ..checkpoint import build_model_from_config
    from ..data import load_splits
    from ..models import count_parameters
    from ..recipes import get_recipe
    from ..training import fit

    cfg = get_recipe(recipe, source=str(train_zip), seed=seed, **({"epochs": epochs} if epochs else {}))
    if val_fraction is not None:
        cfg.data.val_fraction = val_fraction
    for name, value in (distill or {}).items():
        setattr(cfg, name, value)
    if cfg.data.val_fraction == 0:  # nothing to validate on: the latest epoch is the one kept
        cfg.monitor, cfg.mode, cfg.patience = "elapsed_s", "max", 0
    splits = load_splits(cfg.data, progress=progress)
    if splits.test is None or len(splits.test) == 0:
        raise FileNotFoundError(f"no test split next to {train_zip} (expected testPart1.zip beside it)")
    snap = Snapshot(snapshot_seconds, clock)
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    res = fit(cfg, run_dir, splits=splits, callbacks=[snap], progress=progress)
    t = snap.elapsed()
    classes = res.classes
    out = {"recipe": recipe, "model": cfg.model.name, "model_kwargs": cfg.model.kwargs,
           "params": count_parameters(res.model), "augment": cfg.augment.preset, "epochs": len(res.history),
           "best_epoch": res.best_epoch, "ema_decay": cfg.ema_decay, "n_train": len(splits.train),
           "n_val": len(splits.val) if splits.val is not None else 0, "n_test": len(splits.test),
           **_measure(probs := _probs(res.model, splits.test, classes), splits.test, classes),
           "train_seconds": round(t["wall"], 1), "train_cpu_seconds": round(t["cpu"], 1),
           "threads_at_end": torch.get_num_threads(),
           "load_avg_start": round(load0, 2) if load0 is not None else None,
           "load_avg_end": round(os.getloadavg()[0], 2) if load0 is not None else None}
    if snap.state is not None:
        model = build_model_from_config(cfg, len(classes), res.input_shape)
        model.load_state_dict(snap.state)
        at = _measure(_probs(model, splits.test, classes), splits.test, classes)
        out.update({f"{k}_at_{int(snapshot_seconds)}s": v for k, v in at.items() if k != "case_gap_share"})
        out["snapshot_taken_at"] = snap.taken_at
    else:  # the whole run was shorter than the snapshot time: its final model is the answer
        out.update({f"{k}_at_{int(snapshot_seconds)}s": out[k] for k in ("top1", "macro_f1", "case_insensitive")})
        out["snapshot_taken_at"] = "run ended before the snapshot time: final model"
    if return_probs:
        out["_probs"], out["_test"] = probs, splits.test
    return out


def _distil(args: argparse.Namespace, train_zip: Path, root: Path, dirs: list[Path], ensemble: dict,
            common: dict) -> dict:
    """One model of the recipe taught by the members' ensemble (written as one file, the teacher)."""
    from ..checkpoint import save_ensemble
    from ..runs import RunDir, new_run_id

    teacher = root / "teacher.pt"
    save_ensemble(teacher, [RunDir(d).best for d in dirs])
    opts = {"teacher": str(teacher), **{k: getattr(args, k) for k in ("distill_weight", "distill_temperature")
                                        if getattr(args, k) is not None}}
    out = train_and_measure(args.recipe, train_zip, seed=args.seed, run_dir=root / new_run_id("distill"),
                            distill=opts, **common)
    out.pop("_probs"), out.pop("_test")
    out.update(teacher_members=len(dirs), **{k: v for k, v in opts.items() if k != "teacher"},
               student_train_seconds=out["train_seconds"], student_train_cpu_seconds=out["train_cpu_seconds"],
               train_seconds=round(out["train_seconds"] + ensemble["train_seconds"], 1),
               train_cpu_seconds=round(out["train_cpu_seconds"] + ensemble["train_cpu_seconds"], 1))
    return out


def run(args: argparse.Namespace) -> dict:
    if args.distill and args.members < 2:  # before any training
        raise SystemExit("--distill needs --members K (K >= 2): the student learns the members' ensemble")
    train_zip = chars74k_train_zip(args)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="charlab-bench-acc-"))
    from ..cli.train import _TqdmProgress
    from ..runs import new_run_id

    bar = _TqdmProgress(enabled=sys.stderr.isatty(), stream=sys.stderr)
    common = dict(epochs=args.epochs, snapshot_seconds=args.snapshot_seconds, clock=args.clock,
                  val_fraction=args.val_fraction, progress=bar, return_probs=True)
    try:
        first_dir = root / new_run_id(args.recipe)
        result = train_and_measure(args.recipe, train_zip, seed=args.seed, run_dir=first_dir, **common)
        probs, test = result.pop("_probs"), result.pop("_test")
        result.update(machine=f"{platform.machine()}, {os.cpu_count()} cores", clock=args.clock,
                      val_fraction=args.val_fraction, date=time.strftime("%Y-%m-%d"))
        if args.members > 1:
            members, total, dirs = [result], probs.clone(), [first_dir]
            for k in range(1, args.members):
                dirs.append(root / new_run_id(args.recipe))
                r = train_and_measure(args.recipe, train_zip, seed=args.seed + k, run_dir=dirs[-1], **common)
                total += r.pop("_probs")
                r.pop("_test")
                members.append(r)
            classes = list(test.classes)
            result["ensemble"] = {"members": args.members, **_measure(total / args.members, test, classes),
                                  "train_seconds": round(sum(m["train_seconds"] for m in members), 1),
                                  "train_cpu_seconds": round(sum(m["train_cpu_seconds"] for m in members), 1),
                                  "member_top1": [m["top1"] for m in members]}
            if args.distill:
                result["distilled"] = _distil(args, train_zip, root, dirs, result["ensemble"], common)
        if args.compare and args.compare != "none":
            other = train_and_measure(args.compare, train_zip, seed=args.seed, run_dir=root / new_run_id(args.compare),
                                      **common)
            other.pop("_probs"), other.pop("_test")
            result["compare"] = other
    finally:
        bar.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return result
