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


def sample_grid(ds: CharDataset, per_class: int = 8, classes: Optional[Sequence[str]] = None, seed: int = 0,
                gap: int = 2) -> np.ndarray:
    """uint8 image of `per_class` random samples per class, one row per class (grey gaps between cells)."""
    rng = np.random.default_rng(seed)
    wanted = list(classes) if classes is not None else list(ds.classes)
    h, w = ds.images.shape[-2:]
    grid = np.full((len(wanted) * (h + gap) + gap, per_class * (w + gap) + gap), 64, np.uint8)
    labels = ds.labels.numpy()
    for r, name in enumerate(wanted):
        idx = np.flatnonzero(labels == ds.classes.index(name)) if name in ds.classes else np.zeros(0, np.int64)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False) if len(idx) else idx
        for c, i in enumerate(pick):
            y, x = gap + r * (h + gap), gap + c * (w + gap)
            grid[y:y + h, x:x + w] = ds.images[i, 0].numpy()
    return grid
