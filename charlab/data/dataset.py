"""The one in-memory dataset type every part of charlab passes around."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

if TYPE_CHECKING:  # imported where tensors are made: the sources' declarations (the sidebar) import this
    import torch  # module, and the app's landing page must start without torch


@dataclass
class CharDataset:
    """Images as uint8 N×1×H×W (ink bright on dark, MNIST's convention), int64 labels,
    and class names that are the characters themselves wherever they are known.

    H == W == image_size for character sources; composite sources (digitsum) are wider.

    `hashes[i]` identifies image i's CONTENT, independent of image_size and preprocessing, so
    label overrides and duplicate finding survive a change of options (see `content_hash`):
    - folder / zip: sha256 of the file's bytes, as stored;
    - CSV: sha256 of the row's pixels (uint8, side×side, as read, before resizing);
    - MNIST / EMNIST idx: sha256 of the image's raw pixel bytes (h×w uint8, as stored);
    - synthetic: sha256 of the high-resolution rendered canvas, before preprocessing;
    - digitsum: sha256 of the composite's pixels (it only exists at image_size).
    Two images with the same hash are byte-identical in their source. None when unknown.

    `paths[i]` is a printable origin: an absolute file path, `/abs/archive.zip!/entry`,
    `/abs/file.csv#line12`, `synthetic#3`. `source_path(i)` / `source_paths()` give the name as
    the source itself spells it (the zip entry, the folder-relative path, `#line12`).
    """

    images: torch.Tensor  # uint8, N×1×H×W
    labels: torch.Tensor  # int64, N
    classes: list[str]  # index -> class name ("0".."9", "A".."Z", "a".."z" where known)
    paths: Optional[list[str]] = None  # per-image origin (file path or "source#index"), for reports
    skipped: list[dict] = field(default_factory=list)  # [{"path", "reason"}] files that could not be used
    source: str = ""  # the source string it came from
    info: dict = field(default_factory=dict)  # source-specific extras (e.g. digitsum's per-slot digits)
    hashes: Optional[list[str]] = None  # per-image content hash (HASH_CHARS hex chars of sha256; see above)

    def __post_init__(self) -> None:
        import torch

        assert self.images.dtype == torch.uint8 and self.images.dim() == 4, "images must be uint8 N×1×H×W"
        assert self.labels.dtype == torch.int64 and len(self.labels) == len(self.images)
        assert self.hashes is None or len(self.hashes) == len(self.labels), "one hash per image"

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def side(self) -> Optional["torch.Tensor"]:
        """float32 N×G side vectors (charlab.data.geometry: the ink's box on its page, before the
        crop) when the source kept them (`DataConfig.side_inputs`), else None."""
        return self.info.get("side")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def counts(self) -> np.ndarray:
        """Images per class, in class order (zeros included)."""
        return np.bincount(self.labels.numpy(), minlength=self.num_classes)

    def subset(self, index: Sequence[int] | np.ndarray | torch.Tensor) -> "CharDataset":
        import torch

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
            hashes=[self.hashes[i] for i in idx.tolist()] if self.hashes is not None else None,
        )

    def source_path(self, i: int) -> Optional[str]:
        """Image i's name as its source spells it: the zip entry (`A/img1.png`), the path relative
        to the folder, `#line12` for a CSV row; other origins (`synthetic#3`) unchanged."""
        return source_relative(self.paths[i], self.info.get("root")) if self.paths is not None else None

    def source_paths(self) -> Optional[list[str]]:
        """`source_path(i)` for every image (None when the dataset has no paths)."""
        if self.paths is None:
            return None
        root = self.info.get("root")
        return [source_relative(p, root) for p in self.paths]

    def select_classes(self, names: Sequence[str]) -> "CharDataset":
        """Only the images of `names` (in that order), relabelled 0..len(names)-1."""
        import torch

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


HASH_CHARS = 16  # hex chars kept of the sha256: 64 bits, no accidental collision in any real dataset


def content_hash(data: bytes | memoryview) -> str:
    """The `CharDataset.hashes` entry for some bytes: a file's, or an image's raw pixels."""
    return hashlib.sha256(data).hexdigest()[:HASH_CHARS]


def source_relative(ref: str, root: Optional[str]) -> str:
    """`/abs/x.zip!/A/1.png` -> `A/1.png`; `ROOT/A/1.png` -> `A/1.png`; `/abs/f.csv#line12` -> `#line12`."""
    _, sep, entry = ref.partition("!/")
    if sep:
        return entry
    if root:
        root = root.rstrip("/\\")
        if ref.startswith(root + "#"):
            return ref[len(root):]
        if ref.startswith(root + "/") or ref.startswith(root + "\\"):
            return ref[len(root) + 1:].replace("\\", "/")
    return ref


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 N×1×H×W -> float32 in [0, 1]; the model input scale everywhere in charlab."""
    return images.float().div_(255.0)
