"""The digit-sum task solved the structured way: recognise each digit, add them up.

End to end, a model classifies the sum directly (any zoo model trained on a `digitsum`
source). Structured, a per-digit classifier (any checkpoint whose classes include 0..9: one
trained on `synthetic:classes=digits`, MNIST, or all 62 Chars74K classes) reads each of the
k equal-width slots of a composite; the predicted sum is the sum of the k most likely digits.
The full distribution of the sum (the convolution of the k per-slot digit distributions) is
returned too, for top-k sums and confidences. Its argmax is reported beside the plain sum but
is not the prediction: models trained with label smoothing spread a little probability over
every digit, and summed over k slots that mass favours the middle sums (measured: 78.9% vs
85.7% for the plain sum with the same digit model, BENCHMARKS.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .data.dataset import CharDataset
from .errors import CharlabError
from .metrics import accuracy, macro_f1


def slots(images: torch.Tensor, k: int) -> torch.Tensor:
    """uint8 N×1×H×(k·W) -> N·k×1×H×W: the k equal-width windows, slot-major within an image."""
    n, c, h, w = images.shape
    if w % k:
        raise CharlabError(f"composite width {w} is not a multiple of its {k} digit slots")
    s = w // k
    return images.reshape(n, c, h, k, s).permute(0, 3, 1, 2, 4).reshape(n * k, c, h, s)  # N·k×1×H×W


def digit_columns(classes: list[str]) -> list[int]:
    """Indices of the classes 0..9 in a classifier's class list (it may hold letters too)."""
    where = {name: i for i, name in enumerate(classes)}
    missing = [str(d) for d in range(10) if str(d) not in where]
    if missing:
        raise CharlabError(f"a per-digit classifier needs classes 0-9; this one lacks {', '.join(missing)}")
    return [where[str(d)] for d in range(10)]


def sum_distribution(digit_probs: np.ndarray) -> np.ndarray:
    """N×k×10 per-slot digit probabilities -> N×(9k+1) probabilities of the sum."""
    n, k, _ = digit_probs.shape
    out = digit_probs[:, 0]  # N×10
    for j in range(1, k):
        # convolve each row's running sum distribution with the next slot's digit distribution
        nxt = digit_probs[:, j]  # N×10
        conv = np.zeros((n, out.shape[1] + 9))
        for d in range(10):
            conv[:, d:d + out.shape[1]] += out * nxt[:, d:d + 1]
        out = conv
    return out  # N×(9k+1)


@dataclass
class StructuredResult:
    sum_probs: np.ndarray  # N×(9k+1), the distribution of the sum
    digit_probs: np.ndarray  # N×k×10, renormalised over the digit classes
    sum_pred: np.ndarray  # N, the sum of the most likely digits
    digit_pred: np.ndarray  # N×k

    def report(self, dataset: CharDataset) -> dict:
        """Sum accuracy (and macro-F1 over sums) and per-digit accuracy against the composites' truth."""
        y = dataset.labels.numpy()
        out = {"n": int(len(y)), "sum_accuracy": accuracy(y, self.sum_pred),
               "sum_macro_f1": macro_f1(y, self.sum_pred, self.sum_probs.shape[1]),
               "marginal_sum_accuracy": accuracy(y, self.sum_probs.argmax(axis=1))}
        digits = dataset.info.get("digits")
        if digits is not None:
            truth = np.asarray(digits)
            out["digit_accuracy"] = float((truth == self.digit_pred).mean())
            out["all_digits_right"] = float((truth == self.digit_pred).all(axis=1).mean())
        return out


def predict_structured(predictor, dataset: CharDataset, k: int | None = None, progress=None) -> StructuredResult:
    """Apply a per-digit `charlab.predict.Predictor` to each slot of `dataset`'s composites."""
    k = int(k or dataset.info.get("k") or 0)
    if k < 1:
        raise CharlabError("structured prediction needs a digitsum dataset (or k, the digits per image)")
    cols = digit_columns(predictor.classes)
    windows = slots(dataset.images, k)  # N·k×1×S×S
    probs = predictor.predict_dataset(CharDataset(windows, torch.zeros(len(windows), dtype=torch.int64),
                                                  classes=list(predictor.classes)), progress=progress)
    p = probs[:, cols]  # N·k×10: the digit classes of a (possibly) 62-class model
    p = p / np.clip(p.sum(axis=1, keepdims=True), 1e-12, None)
    digit_probs = p.reshape(len(dataset), k, 10)
    digit_pred = digit_probs.argmax(axis=2)  # N×k
    return StructuredResult(sum_probs=sum_distribution(digit_probs), digit_probs=digit_probs,
                            sum_pred=digit_pred.sum(axis=1), digit_pred=digit_pred)
