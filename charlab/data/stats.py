"""Class statistics for the class-balance views, and a sample grid for looking at a dataset."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from .dataset import CharDataset


@dataclass
class ClassStats:
    table: pd.DataFrame  # one row per class: class, count, share, below_median, deficit
    n_images: int
    n_classes: int
    min: int
    median: float
    max: int
    imbalance_ratio: float  # max / min; inf when a class has no image
    smallest: list[str]  # the classes with the minimum count
    below_threshold: list[str]  # classes with fewer images than the threshold asked for

    def to_dict(self) -> dict:
        """JSON-able summary (an infinite ratio becomes None: JSON has no infinity)."""
        return {"n_images": self.n_images, "n_classes": self.n_classes, "min": self.min, "median": self.median,
                "max": self.max,
                "imbalance_ratio": self.imbalance_ratio if math.isfinite(self.imbalance_ratio) else None,
                "smallest": self.smallest, "below_threshold": self.below_threshold}


def class_stats(counts: Sequence[int] | np.ndarray, classes: Sequence[str], threshold: Optional[int] = None) -> ClassStats:
    """Per-class counts -> table and summary. `deficit` is how many images a class lacks to the median."""
    counts = np.asarray(counts, dtype=np.int64)
    classes = [str(c) for c in classes]
    if len(counts) != len(classes):
        raise ValueError(f"{len(counts)} counts for {len(classes)} classes")
    total = int(counts.sum())
    if len(counts) == 0:
        empty = pd.DataFrame({"class": [], "count": [], "share": [], "below_median": [], "deficit": []})
        return ClassStats(empty, 0, 0, 0, 0.0, 0, float("nan"), [], [])
    median = float(np.median(counts))
    lo, hi = int(counts.min()), int(counts.max())
    table = pd.DataFrame({
        "class": classes,
        "count": counts,
        "share": counts / total if total else np.zeros(len(counts)),
        "below_median": counts < median,
        "deficit": np.clip(median - counts, 0, None),
    })
    return ClassStats(
        table=table, n_images=total, n_classes=len(classes), min=lo, median=median, max=hi,
        imbalance_ratio=hi / lo if lo > 0 else float("inf"),
        smallest=[c for c, n in zip(classes, counts) if n == lo],
        below_threshold=[c for c, n in zip(classes, counts) if threshold is not None and n < threshold],
    )


def tile(images: np.ndarray, ncols: int, *, pad: int = 2, gap_after: Optional[int] = None, fill: int = 70,
         slots: Optional[Sequence[int]] = None, nrows: Optional[int] = None) -> np.ndarray:
    """uint8 N×H×W -> one tiled image with grey gutters (ink is white on black, so a black gutter
    would merge the tiles). `slots[i]`: the cell (row-major) of image i, default i, so rows may have
    gaps; `gap_after`: a wider gutter after that column."""
    images = np.asarray(images)
    n, h, w = images.shape
    slots = list(range(n)) if slots is None else [int(s) for s in slots]
    ncols = max(1, min(ncols, max(slots, default=0) + 1)) if nrows is None else max(1, ncols)
    nrows = nrows if nrows is not None else -(-(max(slots, default=-1) + 1) // ncols)
    extra = 3 * pad if gap_after is not None else 0
    out = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad + extra), fill, np.uint8)
    for i, slot in enumerate(slots):
        r, c = divmod(slot, ncols)
        x = pad + c * (w + pad) + (extra if gap_after is not None and c > gap_after else 0)
        y = pad + r * (h + pad)
        out[y:y + h, x:x + w] = images[i]
    return out


def sample_grid(ds: CharDataset, per_class: int = 8, classes: Optional[Sequence[str]] = None, seed: int = 0,
                gap: int = 2) -> np.ndarray:
    """uint8 image of `per_class` random samples per class, one row per class (grey gaps between cells)."""
    rng = np.random.default_rng(seed)
    wanted = list(classes) if classes is not None else list(ds.classes)
    labels = ds.labels.numpy()
    picks, slots = [], []
    for r, name in enumerate(wanted):
        idx = np.flatnonzero(labels == ds.classes.index(name)) if name in ds.classes else np.zeros(0, np.int64)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False) if len(idx) else idx
        picks += [int(i) for i in pick]
        slots += [r * per_class + c for c in range(len(pick))]
    images = ds.images[picks, 0].numpy() if picks else np.zeros((0,) + tuple(ds.images.shape[-2:]), np.uint8)
    return tile(images, per_class, pad=gap, fill=64, slots=slots, nrows=len(wanted))
