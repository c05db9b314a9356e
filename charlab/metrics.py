"""Classification metrics on integer labels, in numpy (no sklearn on the machine).

macro-F1 is the unweighted mean of per-class F1 over the classes that occur in either
y_true or y_pred, as the 36-class report computed it (sklearn's `f1_score(average="macro")`
with labels taken from the data). A class never seen and never predicted would add an
undefined 0/0 and is left out rather than counted as 0.
"""
from __future__ import annotations

import numpy as np


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Counts C×C: rows are the true class, columns the predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    idx = y_true * num_classes + y_pred
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def accuracy(y_true, y_pred) -> float:
    y_true = np.asarray(y_true)
    return float((y_true == np.asarray(y_pred)).mean()) if len(y_true) else float("nan")


def topk_accuracy(probs, y_true, k: int) -> float:
    """Share of samples whose true class is among the k highest scores (probs: N×C)."""
    probs = np.asarray(probs)
    y_true = np.asarray(y_true)
    if len(y_true) == 0:
        return float("nan")
    k = min(k, probs.shape[1])
    topk = np.argpartition(-probs, k - 1, axis=1)[:, :k]  # N×k, unordered
    return float((topk == y_true[:, None]).any(axis=1).mean())


def precision_recall_f1(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, F1 and support from a confusion matrix; 0/0 gives 0."""
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return precision, recall, f1, support


def macro_f1(y_true, y_pred, num_classes: int) -> float:
    cm = confusion_matrix(y_true, y_pred, num_classes)
    _, _, f1, support = precision_recall_f1(cm)
    present = (support > 0) | (cm.sum(axis=0) > 0)
    return float(f1[present].mean()) if present.any() else float("nan")
