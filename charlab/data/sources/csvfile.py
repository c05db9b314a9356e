"""CSV files of flattened images, the label first (the Kaggle layout: `label,pixel0,...,pixel783`),
with or without a header row; EMNIST's CSV exports (`emnist-letters-train.csv`) are read with
their split's class table and transposition. A sibling `...test.csv` with labels is the test split.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from ...config import DataConfig
from ...errors import DataError
from .._registry import SOURCES, Progress
from ..cache import file_stamp
from ..classes import EMNIST_CLASSES, label_names, sort_classes
from .base import Counts, Option, PathSource
from .files import _no_images_error, sibling_test
from .pool import build_dataset, preprocess_arrays

if TYPE_CHECKING:
    from ..dataset import CharDataset


def _csv_header(path: Path) -> tuple[bool, int]:
    """(has a header row, number of columns) from the first line."""
    try:
        with open(path, "r", encoding="utf-8-sig", errors="replace") as f:
            first = f.readline().strip()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    if not first:
        raise DataError(f"{path} is empty: expected rows of label,pixel1,...,pixelN")
    cells = [c.strip().strip('"') for c in first.split(",")]
    numeric = sum(bool(re.fullmatch(r"-?\d+(\.\d*)?([eE][-+]?\d+)?", c)) for c in cells[1:])
    return numeric < len(cells[1:]) / 2, len(cells)


def _csv_side(path: Path, ncols: int) -> int:
    side = int(round((ncols - 1) ** 0.5))
    if ncols < 2 or side * side != ncols - 1:
        if int(round(ncols ** 0.5)) ** 2 == ncols:
            raise DataError(f"{path} has {ncols} columns, a square image and no label column (an unlabelled test "
                            "file?); expected label first, then the pixels")
        raise DataError(f"{path} has {ncols} columns; expected a label then side×side pixels (785 for 28×28)")
    return side


def _emnist_split_of(path: Path) -> str | None:
    m = re.match(r"emnist-([a-z]+)-", path.name.lower())
    return m.group(1) if m and m.group(1) in EMNIST_CLASSES else None


def _read_csv_labels(path: Path, header: bool):
    import pandas as pd

    try:
        return pd.read_csv(path, header=0 if header else None, usecols=[0]).iloc[:, 0]
    except (ValueError, OSError, pd.errors.ParserError) as e:
        raise DataError(f"cannot read {path} as CSV: {str(e).splitlines()[0]}") from None


def _csv_label_table(path: Path, labels) -> dict[int, str] | None:
    """Numeric label -> class name for a whole label column (EMNIST CSVs use their split's table)."""
    import pandas as pd

    if not pd.api.types.is_numeric_dtype(labels):
        return None
    vals = np.unique(labels.dropna().astype(np.int64).to_numpy()).tolist()
    emnist = _emnist_split_of(path)
    if emnist:
        names, offset = EMNIST_CLASSES[emnist], 1 if emnist == "letters" else 0
        return {v: names[v - offset] if 0 <= v - offset < len(names) else str(v) for v in vals}
    return label_names(vals)


def _csv_class_names(path: Path, labels, table: dict[int, str] | None = None) -> list[str]:
    """Per-row class names of a label column without gaps. A test file takes its train file's
    table: its own labels alone (say only 1 and 3) would not tell digits from A-Z."""
    import pandas as pd

    if not pd.api.types.is_numeric_dtype(labels):
        return [str(v).strip() for v in labels]
    table = table or _csv_label_table(path, labels)
    return [table.get(v, str(v)) for v in labels.astype(np.int64).tolist()]


def csv_train_table(path: Path) -> dict[int, str] | None:
    header, _ = _csv_header(path)
    return _csv_label_table(path, _read_csv_labels(path, header))


def _load_csv(path: Path, source: str, cfg: DataConfig, role: str, progress: Progress | None,
              table: dict[int, str] | None = None) -> Optional["CharDataset"]:
    import pandas as pd

    from .. import cache

    header, ncols = _csv_header(path)
    side = _csv_side(path, ncols)
    if role == "test":
        sib = sibling_test(path)
        if sib is None or _csv_header(sib)[1] != ncols:  # Kaggle's test.csv has no labels: not a test split
            return None
        return _load_csv(sib, str(sib), cfg, "testsource", progress, table=csv_train_table(path))
    key = cache.cache_key({"kind": "csv", "file": file_stamp(path), "prep": cache.prep_options(cfg),
                           "table": sorted(table.items()) if table else None})
    ds = cache.load_cached(key, source)
    if ds is not None:
        return ds
    if progress:
        progress(0, 1, f"reading {path.name}")
    label_chunks, raws, missing = [], [], []
    # chunks of float32 pixels, kept as uint8: a 372,000-row A-Z CSV would take 2.3 GB as pandas' int64
    try:
        reader = pd.read_csv(path, header=None, skiprows=1 if header else 0, chunksize=20000,
                             dtype={i: np.float32 for i in range(1, ncols)})
        for chunk in reader:
            pixels = chunk.iloc[:, 1:].to_numpy(np.float32)  # n×side²
            missing.append(np.isnan(pixels).any(axis=1) | chunk.iloc[:, 0].isna().to_numpy())
            if np.nanmax(pixels, initial=0) <= 1.0:  # some exports store intensities in [0, 1]
                pixels = pixels * 255
            raws.append(np.clip(np.rint(np.nan_to_num(pixels)), 0, 255).astype(np.uint8))
            label_chunks.append(chunk.iloc[:, 0])
    except (ValueError, OSError, pd.errors.ParserError) as e:
        raise DataError(f"cannot read {path} as CSV: {str(e).splitlines()[0]}") from None
    bad = np.concatenate(missing) if missing else np.zeros(0, bool)
    first = 2 if header else 1  # file line number of the first data row
    skipped = [{"path": f"{path}#line{first + i}", "reason": "missing values"} for i in np.flatnonzero(bad)]
    keep = np.flatnonzero(~bad)
    if len(keep) == 0:
        raise _no_images_error(path, skipped, "expected rows of label,pixel1,...,pixelN with numbers 0-255")
    all_names = _csv_class_names(path, pd.concat(label_chunks, ignore_index=True).iloc[keep], table)
    raw = np.concatenate(raws)[keep].reshape(-1, side, side)  # n×side×side
    if _emnist_split_of(path):
        raw = raw.transpose(0, 2, 1)  # EMNIST stores images transposed
    images, hashes = preprocess_arrays(raw, cfg, progress, f"preprocessing {path.name}")
    ds = build_dataset(images, all_names, [f"{path.resolve()}#line{first + i}" for i in keep], skipped, source,
                       {"root": str(path.resolve()), "kind": "csv", "part": role}, hashes=hashes)
    cache.save_cached(key, ds)
    return ds



@SOURCES.register("csv")
class CsvSource(PathSource):
    """A .csv of flattened images, label first."""

    title = "CSV file"
    help = "The label, then side×side pixels per row (784 for 28×28: the Kaggle A–Z layout)."
    options = (Option("path", str, "", label="Path to a .csv", placeholder="/data/A_Z Handwritten Data.csv"),)
    menu = 40

    @classmethod
    def claims(cls, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() == ".csv"

    def check(self) -> None:
        _csv_side(self.path, _csv_header(self.path)[1])

    def load(self, cfg: DataConfig, split: str, progress: Progress | None) -> Optional["CharDataset"]:
        return _load_csv(self.path, self.text, cfg, split, progress)

    def load_test(self, cfg: DataConfig, progress: Progress | None, train_source: Optional[str] = None) -> "CharDataset":
        """A CSV test source with numeric labels names them like a CSV `train_source`."""
        train = Path(train_source).expanduser() if train_source else None
        if train is not None and train.suffix.lower() == ".csv" and train.is_file():
            return _load_csv(self.path, self.text, cfg, "testsource", progress, table=csv_train_table(train))
        return _load_csv(self.path, self.text, cfg, "testsource", progress)

    def counts(self, split: str = "train", progress: Progress | None = None) -> Counts:
        """From the label column alone."""
        path = self.path
        header, ncols = _csv_header(path)
        _csv_side(path, ncols)
        table = None
        if split == "test":
            table, path = csv_train_table(path), sibling_test(path)
            if path is None:
                return [], np.zeros(0, np.int64), []
            header = _csv_header(path)[0]
        names = _csv_class_names(path, _read_csv_labels(path, header).dropna(), table)
        classes = sort_classes(names)
        index = {c: i for i, c in enumerate(classes)}
        return classes, np.bincount([index[n] for n in names], minlength=len(classes)).astype(np.int64), []
