"""Label-issue suspects: samples whose given label the model confidently contradicts.

Confident learning (Northcutt, Jiang & Chuang 2021, "Confident Learning: Estimating
Uncertainty in Dataset Labels"), the core of it in numpy:
- per class j, a threshold t_j = the mean probability of class j over the samples labelled j
  (the model's average self-confidence for that class);
- a sample's confident class is the most probable class among those whose probability
  reaches their threshold; a sample is a suspect when that class is not its given label;
- the confident joint (given × confident class counts), calibrated so each row sums to the
  number of samples with that given label, estimates the share of wrong labels.

Probabilities must be out-of-fold (each sample scored by a model that never trained on it,
`out_of_fold_probs`) for honest scores: a model that has seen a wrong label partly
memorises it, so in-sample probabilities understate label errors. The report says which
kind it holds.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from .errors import CharlabError

Progress = Callable[[int, int, str], None]

IN_SAMPLE_NOTE = ("scores are IN-SAMPLE: the model trained on these very labels and partly memorised the wrong "
                  "ones, so label errors are understated; use out-of-fold probabilities (folds >= 2) for honest scores")
OUT_OF_FOLD_NOTE = "scores are out-of-fold: each sample was scored by a model that never trained on it"
WEAK_ACCURACY = 0.5  # below this agreement with the given labels the report warns that the model is weak


@dataclass
class SuspectReport:
    suspects: pd.DataFrame  # index, path, given, likely, score, prob_given, prob_likely; most suspect first
    pairs: pd.DataFrame  # given, likely, count, given_to_likely, likely_to_given; a swap A<->B is ONE line
    share: float  # estimated fraction of wrong labels (calibrated confident joint)
    in_sample: bool  # True when the probabilities came from a model trained on these labels
    note: str  # says whether the scores are in-sample, and what share means
    thresholds: Optional[np.ndarray] = None  # C per-class self-confidence thresholds
    n: int = 0  # samples analysed
    accuracy: float = float("nan")  # share of samples whose most probable class is the given label

    def to_dict(self, limit: int | None = None) -> dict:
        """JSON-able (what `charlab suspects --json` prints)."""
        sus = self.suspects if limit is None else self.suspects.head(limit)
        return {
            "suspects": [{"path": r["path"], "given": r["given"], "likely": r["likely"], "score": float(r["score"]),
                          "index": int(r["index"])} for r in sus.to_dict("records")],
            "pairs": [{k: (v if isinstance(v, str) else int(v)) for k, v in r.items()}
                      for r in self.pairs.to_dict("records")],
            "share": float(self.share),
            "n": int(self.n),
            "accuracy": float(self.accuracy),
            "n_suspects": int(len(self.suspects)),
            "in_sample": bool(self.in_sample),
            "note": self.note,
        }


def find_suspects(probs, labels, classes: Sequence[str], paths: Optional[Sequence[str]] = None,
                  in_sample: bool = False) -> SuspectReport:
    """probs N×C (out-of-fold preferably), labels N (given) -> ranked suspects and the pair summary.

    score = p(likely) - p(given), the normalised margin by which the model prefers its
    confident class over the given label (in [-1, 1]; higher is more suspect).
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, c = probs.shape if probs.ndim == 2 else (0, 0)
    if probs.ndim != 2 or len(labels) != n or c != len(classes):
        raise CharlabError(f"probs {probs.shape} do not fit {len(labels)} labels × {len(classes)} classes")
    if n and (labels.min() < 0 or labels.max() >= c):
        raise CharlabError(f"labels must lie in 0..{c - 1}")
    rows = np.arange(n)
    counts = np.bincount(labels, minlength=c)  # C
    self_conf = np.bincount(labels, weights=probs[rows, labels], minlength=c)  # C: summed p(given) per class
    # A class nobody is labelled with gets an unreachable threshold: no sample can be moved into it.
    thresholds = np.where(counts > 0, self_conf / np.maximum(counts, 1), np.inf)  # C

    above = probs >= thresholds[None, :]  # N×C
    has_conf = above.any(axis=1)  # N
    confident = np.where(above, probs, -1.0).argmax(axis=1)  # N
    suspect = has_conf & (confident != labels)
    idx = np.flatnonzero(suspect)
    score = probs[idx, confident[idx]] - probs[idx, labels[idx]]
    order = np.lexsort((idx, -score))  # most suspect first, ties by index
    idx, score = idx[order], score[order]
    suspects = pd.DataFrame({
        "index": idx.astype(np.int64),
        "path": [paths[i] for i in idx] if paths is not None else [f"#{i}" for i in idx],
        "given": [classes[k] for k in labels[idx]],
        "likely": [classes[k] for k in confident[idx]],
        "score": score,
        "prob_given": probs[idx, labels[idx]],
        "prob_likely": probs[idx, confident[idx]],
    })

    # Confident joint: rows = given label, cols = confident class, over samples with a confident class.
    joint = np.zeros((c, c), dtype=np.float64)
    np.add.at(joint, (labels[has_conf], confident[has_conf]), 1.0)
    row = joint.sum(axis=1, keepdims=True)
    calibrated = np.divide(joint * counts[:, None], row, out=np.zeros_like(joint), where=row > 0)
    share = float((calibrated.sum() - np.trace(calibrated)) / n) if n else 0.0

    pairs = pair_summary(labels[idx], confident[idx], classes)
    accuracy = float((probs.argmax(axis=1) == labels).mean()) if n else float("nan")
    note = (IN_SAMPLE_NOTE if in_sample else OUT_OF_FOLD_NOTE) + (
        f"; {len(idx)} of {n} samples are suspects, estimated share of wrong labels {share:.1%}")
    if n and accuracy < WEAK_ACCURACY:
        # Confident learning trusts the model: a barely trained one flags its own mistakes as label issues.
        note += (f"; WARNING: the model agrees with only {accuracy:.0%} of the given labels, so many suspects "
                 f"may be its own mistakes; train longer or use a stronger model")
    return SuspectReport(suspects=suspects, pairs=pairs, share=share, in_sample=bool(in_sample), note=note,
                         thresholds=thresholds, n=n, accuracy=accuracy)


def pair_summary(given: np.ndarray, likely: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """Count (given, likely) pairs with both directions of a pair on one line, so a systematic
    swap of two classes is a single dominant line. The line reads in its more frequent direction."""
    c = len(classes)
    m = np.zeros((c, c), dtype=np.int64)
    np.add.at(m, (np.asarray(given, np.int64), np.asarray(likely, np.int64)), 1)
    fwd = np.triu(m, 1)  # i<j: given i -> likely j
    bwd = np.triu(m.T, 1)  # i<j: given j -> likely i
    i, j = np.nonzero(fwd + bwd)
    a, b = fwd[i, j], bwd[i, j]
    flip = b > a  # read the line in its dominant direction
    g = np.where(flip, j, i)
    lk = np.where(flip, i, j)
    df = pd.DataFrame({"given": [classes[k] for k in g], "likely": [classes[k] for k in lk],
                       "count": (a + b).astype(np.int64), "given_to_likely": np.maximum(a, b).astype(np.int64),
                       "likely_to_given": np.minimum(a, b).astype(np.int64)})
    return df.sort_values(["count", "given_to_likely"], ascending=False, kind="stable").reset_index(drop=True)


def stratified_folds(labels, folds: int, seed: int = 0) -> np.ndarray:
    """Fold number (0..folds-1) per sample, each class spread evenly over the folds."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        # Rotate the starting fold per class so small classes do not all land in fold 0.
        fold[idx] = (np.arange(len(idx)) + offset) % folds
        offset += len(idx)
    return fold


def _fold_progress(progress: Optional[Progress], k: int, total_folds: int) -> Optional[Progress]:
    if progress is None:
        return None

    def inner(done: int, total: int, msg: str = "") -> None:
        frac = done / total if total else 1.0
        progress(int(1000 * (k + frac)), 1000 * total_folds, f"model {k + 1}/{total_folds}: {msg}")

    return inner


def _train_and_predict(config, train, val, predict_on, progress) -> np.ndarray:
    from .data import Splits
    from .interpret import Interpretation
    from .training import fit

    splits = Splits(train=train, val=val, test=None, notes=[])
    result = fit(config, None, splits=splits, progress=progress)
    interp = Interpretation.from_model(result.model, list(train.classes), predict_on)
    return interp.probs


def _val_split(dataset, idx: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Carve a stratified validation share out of `idx` (for early stopping / best epoch)."""
    from .data import stratified_split

    tr, va, _ = stratified_split(dataset.labels.numpy()[idx], fraction, seed)
    return idx[tr], idx[va]


def out_of_fold_probs(config, dataset, folds: int = 3, progress: Optional[Progress] = None) -> np.ndarray:
    """Train `folds` models with charlab.training.fit, each on the other folds, and predict the
    held-out fold: N×C probabilities where no sample was scored by a model that saw its label.

    Each model picks its best epoch on a validation share carved from its own training folds
    (config.data.val_fraction), never from the held-out fold.
    """
    if folds < 2:
        raise CharlabError(f"out-of-fold probabilities need at least 2 folds, got {folds}")
    labels = dataset.labels.numpy()
    fold = stratified_folds(labels, folds, config.seed)
    probs = np.zeros((len(dataset), dataset.num_classes), dtype=np.float32)
    for k in range(folds):
        held = np.flatnonzero(fold == k)
        tr, va = _val_split(dataset, np.flatnonzero(fold != k), config.data.val_fraction, config.seed + k)
        cfg = copy.deepcopy(config)
        cfg.seed = config.seed + k
        probs[held] = _train_and_predict(cfg, dataset.subset(tr), dataset.subset(va) if len(va) else None,
                                         dataset.subset(held), _fold_progress(progress, k, folds))
    if progress is not None:
        progress(1, 1, "done")
    return probs


def in_sample_probs(config, dataset, progress: Optional[Progress] = None) -> np.ndarray:
    """One model trained on (most of) the data, scoring all of it: quick, but understates label errors."""
    tr, va = _val_split(dataset, np.arange(len(dataset)), config.data.val_fraction, config.seed)
    return _train_and_predict(config, dataset.subset(tr), dataset.subset(va) if len(va) else None, dataset,
                              _fold_progress(progress, 0, 1))
