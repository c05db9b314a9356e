"""MNIST and EMNIST idx files (raw or .gz): `mnist:DIR` and `emnist:DIR[:split]`.

The files are looked for in DIR, DIR/raw, DIR/MNIST/raw (torchvision's layout) and DIR/gzip;
when they are missing and the machine is online, torchvision downloads them. t10k (MNIST) and
`-test-` (EMNIST) files are the test split. EMNIST's images are stored transposed: fixed here.
A `.gz` is decompressed in a stream with a size cap, so a gzip bomb stops at the cap.
"""
from __future__ import annotations

import gzip
import os
import re
import socket
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional

import numpy as np

from ...config import DataConfig
from ...errors import DataError
from .._registry import SOURCES, Progress
from ..cache import cache_dir, file_stamp
from ..classes import EMNIST_CLASSES, sort_classes
from .base import Counts, Option, Source
from .files import env_limit
from .pool import preprocess_arrays

if TYPE_CHECKING:
    from ..dataset import CharDataset

# The largest real idx file, EMNIST byclass train images, is 697,932 × 28 × 28 = 547 MB.
MAX_IDX_BYTES = 1 << 30  # decompressed bytes an idx file may hold; $CHARLAB_MAX_IDX_BYTES raises it


def _idx_dirs(root: Path, sub: str) -> list[Path]:
    return [root, root / "raw", root / sub / "raw", root / sub, root / "gzip"]


def _find_idx(root: Path, sub: str, stems: Iterable[str]) -> Path | None:
    for d in _idx_dirs(root, sub):
        for stem in stems:
            for suffix in ("", ".gz"):
                p = d / f"{stem}{suffix}"
                if p.is_file():
                    return p
    return None


def read_idx(path: Path) -> np.ndarray:
    """An idx file (raw or .gz) as a numpy array: magic 0x0000 08 D (ubyte, D dims), big-endian sizes."""
    limit = env_limit("CHARLAB_MAX_IDX_BYTES", MAX_IDX_BYTES, "bytes")
    gz = path.suffix == ".gz"
    try:
        with (gzip.open if gz else open)(path, "rb") as f:
            data = f.read(limit + 1)  # a gzip stream stops decompressing here: a bomb costs at most the cap
    except (OSError, EOFError, zlib.error) as e:
        what = "a corrupt or truncated gzip file" if gz else "unreadable"
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"cannot read {path}: {what} ({detail})") from None
    if len(data) > limit:
        raise DataError(f"{path} {'decompresses to' if gz else 'holds'} more than {limit / 2**30:.1f} GiB, over the "
                        "idx size limit (a gzip bomb, or set CHARLAB_MAX_IDX_BYTES higher)")
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or not 1 <= data[3] <= 4:
        raise DataError(f"{path} is not an idx file of unsigned bytes (bad magic number)")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(dims)):
        raise DataError(f"{path} is truncated or corrupt: header says {dims}, holds {len(data) - offset} bytes")
    return np.frombuffer(data, np.uint8, offset=offset).reshape(dims)


def _offline() -> bool:
    if os.environ.get("CHARLAB_OFFLINE", "") not in ("", "0"):
        return True
    try:
        socket.create_connection(("ossci-datasets.s3.amazonaws.com", 443), timeout=3).close()
        return False
    except OSError:
        return True


@dataclass
class _IdxSpec:
    name: str  # "MNIST" | "EMNIST": torchvision's folder name under the root
    root: Path
    emnist_split: Optional[str]

    def stems(self, split: str, what: str) -> list[str]:
        part = "train" if split == "train" else "test"
        if self.emnist_split:
            return [f"emnist-{self.emnist_split}-{part}-{what}-idx{3 if what == 'images' else 1}-ubyte"]
        part = "train" if split == "train" else "t10k"
        dims = 3 if what == "images" else 1
        return [f"{part}-{what}-idx{dims}-ubyte", f"{part}-{what}.idx{dims}-ubyte"]

    def find(self, split: str) -> tuple[Path | None, Path | None]:
        return _find_idx(self.root, self.name, self.stems(split, "images")), _find_idx(self.root, self.name, self.stems(split, "labels"))

    def download(self, split: str) -> None:
        from ..compat import tv_datasets

        tv = tv_datasets()
        if self.emnist_split:
            tv.EMNIST(str(self.root), split=self.emnist_split, train=split == "train", download=True)
        else:
            tv.MNIST(str(self.root), train=split == "train", download=True)

    def classes(self) -> tuple[list[str], dict[int, str]]:
        if not self.emnist_split:
            return list(EMNIST_CLASSES["mnist"]), {i: str(i) for i in range(10)}
        mapping_file = _find_idx(self.root, self.name, [f"emnist-{self.emnist_split}-mapping.txt"])
        if mapping_file is not None:
            table = {}
            for line in mapping_file.read_text().split("\n"):
                cells = line.split()
                if len(cells) >= 2:
                    table[int(cells[0])] = chr(int(cells[1]))
        else:
            names = EMNIST_CLASSES[self.emnist_split]
            offset = 1 if self.emnist_split == "letters" else 0
            table = {i + offset: c for i, c in enumerate(names)}
        return sort_classes(table.values()), table


def _idx_spec(kind: str, arg: str) -> _IdxSpec:
    if kind == "mnist":
        return _IdxSpec("MNIST", Path(arg or cache_dir() / "datasets").expanduser(), None)
    if arg in EMNIST_CLASSES:  # "emnist:letters": the default folder
        folder, split = "", arg
    else:
        folder, _, split = arg.rpartition(":") if re.search(r":[a-z]+$", arg) else (arg, "", "")
    split = split or "balanced"
    if split not in EMNIST_CLASSES:
        raise DataError(f"unknown EMNIST split {split!r}; valid: {', '.join(EMNIST_CLASSES)}")
    return _IdxSpec("EMNIST", Path(folder or cache_dir() / "datasets").expanduser(), split)


def _idx_files(spec: _IdxSpec, split: str, allow_download: bool = True) -> tuple[Path, Path]:
    images, labels = spec.find(split)
    if (images is None or labels is None) and allow_download and not _offline():
        try:
            spec.download(split)
        except Exception as e:  # noqa: BLE001 - network and archive errors alike: report and stop
            raise DataError(f"{spec.name} files not found under {spec.root} and the download failed: {e}") from None
        images, labels = spec.find(split)
    if images is None or labels is None:
        looked = ", ".join(str(d) for d in dict.fromkeys(_idx_dirs(spec.root, spec.name)))
        want = " and ".join(f"{s}[.gz]" for s in (spec.stems(split, "images")[0], spec.stems(split, "labels")[0]))
        raise DataError(f"{spec.name} files not found: looked for {want} in {looked} (offline, so not downloaded)")
    return images, labels


def _idx_labels(spec: _IdxSpec, labels_path: Path) -> tuple[list[str], np.ndarray]:
    """(class names, label indices into them) from the raw idx labels."""
    classes, table = spec.classes()
    raw = read_idx(labels_path).astype(np.int64)
    index = {c: i for i, c in enumerate(classes)}
    lookup = np.full(max(max(table), int(raw.max(initial=0))) + 1, -1, np.int64)
    for lab, name in table.items():
        lookup[lab] = index[name]
    mapped = lookup[raw]
    if (mapped < 0).any():
        unknown = sorted(set(raw[mapped < 0].tolist()))
        raise DataError(f"{labels_path} has labels {unknown[:10]} that the {spec.emnist_split or 'mnist'} mapping does not know")
    return classes, mapped


def _load_idx(spec: _IdxSpec, cfg: DataConfig, split: str, progress: Progress | None) -> "CharDataset":
    import torch

    from ..dataset import CharDataset

    images_path, labels_path = _idx_files(spec, split)
    raw = read_idx(images_path)
    if raw.ndim != 3:
        raise DataError(f"{images_path} holds {raw.ndim}-D data; expected images n×h×w")
    classes, labels = _idx_labels(spec, labels_path)
    if len(labels) != len(raw):
        raise DataError(f"{images_path} has {len(raw)} images but {labels_path} has {len(labels)} labels")
    if spec.emnist_split:
        raw = raw.transpose(0, 2, 1)  # EMNIST's idx images are stored transposed
    images, hashes = preprocess_arrays(np.ascontiguousarray(raw), cfg, progress, f"preprocessing {images_path.name}")
    return CharDataset(images=torch.from_numpy(images).unsqueeze(1), labels=torch.from_numpy(labels), classes=classes,
                       paths=[f"{images_path}#{i}" for i in range(len(labels))], skipped=[], source="",
                       info={"root": str(spec.root), "kind": spec.name.lower(), "part": split}, hashes=hashes)


@SOURCES.register("mnist")
class IdxSource(Source):
    """`mnist:DIR`: MNIST idx files; `emnist:DIR[:split]`: EMNIST idx files of one split (balanced by default)."""

    title = "MNIST / EMNIST"
    help = "A folder of MNIST or EMNIST idx files (raw or .gz), as torchvision downloads them."
    prefixes = ("mnist", "emnist")
    options = (Option("folder", str, "", label="Folder with the idx files", placeholder="/data/mnist"),
               Option("dataset", str, "mnist", choices=("mnist",) + tuple(f"emnist:{s}" for s in sorted(EMNIST_CLASSES)),
                      choice_labels={"mnist": "MNIST (10 digits)",
                                     **{f"emnist:{s}": f"EMNIST {s} ({len(c)} classes)" for s, c in EMNIST_CLASSES.items()}},
                      label="Dataset", help="MNIST's digits, or one split of EMNIST (letters: A–Z with the cases "
                                            "merged; balanced: 47 classes)."))
    menu = 30

    @classmethod
    def compose(cls, values: Mapping[str, Any]) -> str:
        folder, dataset = str(values.get("folder") or "").strip(), values.get("dataset") or "mnist"
        if not folder:
            return ""
        return f"mnist:{folder}" if dataset == "mnist" else f"emnist:{folder}:{dataset.split(':', 1)[1]}"

    @property
    def spec(self) -> _IdxSpec:
        return _idx_spec(self.prefix, self.arg)

    def identity(self) -> str:
        spec = self.spec
        return repr((spec.name, str(spec.root.resolve()), spec.emnist_split))

    def check(self) -> None:
        spec = self.spec
        images, labels = spec.find("train")
        if (images is None or labels is None) and _offline():
            _idx_files(spec, "train", allow_download=False)  # raises: which files, where it looked

    def fingerprint(self, split: str) -> Any:
        return [file_stamp(p) if p else None for p in self.spec.find(split)]

    def build(self, cfg: DataConfig, split: str, progress: Progress | None) -> "CharDataset":
        return _load_idx(self.spec, cfg, split, progress)

    def counts(self, split: str = "train", progress: Progress | None = None) -> Counts:
        """From the labels file alone."""
        spec = self.spec
        classes, labels = _idx_labels(spec, _idx_files(spec, split)[1])
        return classes, np.bincount(labels, minlength=len(classes)), []
