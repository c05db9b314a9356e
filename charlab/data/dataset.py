"""The one in-memory dataset type every part of charlab passes around."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch


@dataclass
class CharDataset:
    """Images as uint8 N×1×H×W (ink bright on dark, MNIST's convention), int64 labels,
    and class names that are the characters themselves wherever they are known.

    H == W == image_size for character sources; composite sources (digitsum) are wider.
    """

    images: torch.Tensor  # uint8, N×1×H×W
    labels: torch.Tensor  # int64, N
    classes: list[str]  # index -> class name ("0".."9", "A".."Z", "a".."z" where known)
    paths: Optional[list[str]] = None  # per-image origin (file path or "source#index"), for reports
    skipped: list[dict] = field(default_factory=list)  # [{"path", "reason"}] files that could not be used
    source: str = ""  # the source string it came from
    info: dict = field(default_factory=dict)  # source-specific extras (e.g. digitsum's per-slot digits)

    def __post_init__(self) -> None:
        assert self.images.dtype == torch.uint8 and self.images.dim() == 4, "images must be uint8 N×1×H×W"
        assert self.labels.dtype == torch.int64 and len(self.labels) == len(self.images)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def counts(self) -> np.ndarray:
        """Images per class, in class order (zeros included)."""
        return np.bincount(self.labels.numpy(), minlength=self.num_classes)

    def subset(self, index: Sequence[int] | np.ndarray | torch.Tensor) -> "CharDataset":
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64))
        info = {k: (v[idx] if isinstance(v, torch.Tensor) and len(v) == len(self) else v) for k, v in self.info.items()}
        return CharDataset(
            images=self.images[idx],
            labels=self.labels[idx],
            classes=list(self.classes),
            paths=[self.paths[i] for i in idx.tolist()] if self.paths is not None else None,
            skipped=list(self.skipped),
            source=self.source,
            info=info,
        )

    def select_classes(self, names: Sequence[str]) -> "CharDataset":
        """Only the images of `names` (in that order), relabelled 0..len(names)-1."""
        where = {c: i for i, c in enumerate(self.classes)}
        missing = [n for n in names if n not in where]
        if missing:
            raise KeyError(f"classes not in the dataset: {', '.join(missing)}")
        remap = torch.full((self.num_classes,), -1, dtype=torch.int64)
        for new, name in enumerate(names):
            remap[where[name]] = new
        keep = torch.nonzero(remap[self.labels] >= 0).flatten()
        out = self.subset(keep)
        out.labels = remap[out.labels]
        out.classes = list(names)
        return out


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 N×1×H×W -> float32 in [0, 1]; the model input scale everywhere in charlab."""
    return images.float().div_(255.0)
