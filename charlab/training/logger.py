"""A small smoothed-metric logger (after torchvision's references/classification/utils.py).

The per-batch loss is noisy; the progress bar shows a windowed median, while the epoch's
metrics row uses exact sums (`global_avg`), so the two never get confused.
"""
from __future__ import annotations

from collections import deque
from statistics import median


class SmoothedValue:
    """Track a series: `median`/`avg` over the last `window` values, `global_avg` over all."""

    def __init__(self, window: int = 20):
        self.values: deque[float] = deque(maxlen=window)
        self.total = 0.0
        self.count = 0

    def update(self, value: float, n: int = 1) -> None:
        self.values.append(float(value))
        self.total += float(value) * n
        self.count += n

    @property
    def median(self) -> float:
        return median(self.values) if self.values else float("nan")

    @property
    def avg(self) -> float:
        return sum(self.values) / len(self.values) if self.values else float("nan")

    @property
    def global_avg(self) -> float:
        return self.total / self.count if self.count else float("nan")


class MetricLogger:
    """Named SmoothedValues; `str(logger)` gives a compact 'loss 0.512 acc 0.874' for a bar."""

    def __init__(self, window: int = 20):
        self.window = window
        self.meters: dict[str, SmoothedValue] = {}

    def update(self, n: int = 1, **values: float) -> None:
        for k, v in values.items():
            self.meters.setdefault(k, SmoothedValue(self.window)).update(v, n)

    def __getitem__(self, name: str) -> SmoothedValue:
        return self.meters[name]

    def __str__(self) -> str:
        return " ".join(f"{k} {m.median:.4g}" for k, m in self.meters.items())
