"""Data sources: one string -> a cached `CharDataset`.

- `name` or `name:ARG` where name is a registered prefix (synthetic, mnist, emnist, digitsum);
- otherwise a path: a folder or a `.zip` in the class-per-subfolder layout (possibly under a
  wrapper folder, possibly split into train/ and test/), or a `.csv` of flattened images with
  the label first (the Kaggle layout).

One module per kind (`files`, `csvfile`, `idx`, `synthetic`, `digitsum`), each a `Source`
class registered in `SOURCES` with the options the sidebar shows (`base.py` says how to add
one); `resolve(text)` picks the kind; the process-pool decoding lives in `pool.py`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from ...config import DataConfig
from .._registry import SOURCES, Progress
from .base import Counts, Option, Source, check_split, kinds, prefixes, resolve
from .pool import Originals, chunks, decode_image_bytes, map_chunks, n_workers, preprocess_arrays, read_image
# importing each kind's module registers it (the sidebar orders kinds by their `menu`)
from . import synthetic as _synthetic  # noqa: E402,F401
from .files import FileSource, list_source, layout, open_image, sibling_test  # noqa: E402
from .idx import IdxSource, read_idx  # noqa: E402
from .csvfile import CsvSource  # noqa: E402
from . import digitsum as _digitsum  # noqa: E402,F401

if TYPE_CHECKING:
    from ..dataset import CharDataset


def load_source(source: str, cfg: DataConfig | None = None, *, split: str = "train",
                progress: Progress | None = None) -> Optional["CharDataset"]:
    """Load a source string (see the module docstring) as uint8 N×1×S×S, cached on disk.

    Returns None only for split="test" when the source has no test split of its own.
    """
    cfg = cfg or DataConfig()
    cfg.validate()
    check_split(split)
    return _has_side(resolve(source).load(cfg, split, progress), cfg, source)


def load_test_source(source: str, cfg: DataConfig, progress: Progress | None = None, *,
                     train_source: str | None = None) -> "CharDataset":
    """An explicit test source: its own test part when it has one (a test/ folder, MNIST's t10k),
    otherwise all of it. A CSV test source with numeric labels names them like `train_source`."""
    return _has_side(resolve(source).load_test(cfg, progress, train_source), cfg, source)


def _has_side(ds: Optional["CharDataset"], cfg: DataConfig, source: str) -> Optional["CharDataset"]:
    """Side inputs (charlab.data.geometry) come from pages: image files (a folder or zip). A CSV
    row, an idx image, a synthetic glyph or a digit-sum composite has no page to measure."""
    if ds is not None and cfg.side_inputs and ds.side is None and not cfg.side_dropout:
        raise _no_pages(source, cfg.side_inputs)
    return ds


def _no_pages(source: str, kind: str):
    from ...errors import DataError

    return DataError(f"side inputs ({kind!r}) need image files on their pages (a folder or zip); "
                     f"{source} has no page to measure them on; turn side inputs off for it")


def source_counts(source: str, progress: Progress | None = None, *, split: str = "train") -> Counts:
    """(classes, counts, skipped) without decoding images where possible.

    Folder and zip counts are of image files found (a corrupt file is counted until it is decoded);
    a CSV reads only its first column; MNIST/EMNIST read only the labels file; synthetic counts
    come from its options; other kinds load (from the cache when it has them).
    """
    check_split(split)
    return resolve(source).counts(split, progress)


def check_test_source(source: str, test_source: str | None) -> None:
    """Refuse a test source that is the training source itself. With a test split of its own, that
    split is already the default; without one, every test image would be a training image (a
    train/test leak), and the test score would measure memory, not generalisation."""
    from ...errors import DataError

    if test_source and resolve(test_source).identity() == resolve(source).identity():
        raise DataError(f"the test source {test_source} is the training source itself: a train/test leak; leave the "
                        "test source out to use the source's own test split, or name other data")


def check_source(source: str, test_source: str | None = None, side_inputs: str | None = None,
                 side_dropout: float = 0.0) -> None:
    """Cheap (nothing decoded): raise DataError when a training run on these sources would fail at
    once: a missing path, an unreadable zip or CSV header, bad options, absent idx files offline,
    a test source that is the training source itself, or side inputs asked of a source without
    pages (DataConfig.side_inputs, unless side_dropout makes them optional). The app calls it before launching."""
    resolve(source).check()
    if test_source:
        resolve(test_source).check()
        check_test_source(source, test_source)
    for s in (source, test_source) if side_inputs and not side_dropout else ():
        if s and not resolve(s).pages:
            raise _no_pages(s, side_inputs)


__all__ = ["check_source", "SOURCES", "Counts", "Option", "Source", "check_split", "check_test_source", "kinds", "prefixes",
           "resolve", "load_source", "load_test_source", "source_counts", "open_image", "read_idx", "read_image",
           "decode_image_bytes", "Originals", "chunks", "map_chunks", "n_workers", "preprocess_arrays", "sibling_test", "list_source",
           "layout", "FileSource", "IdxSource", "CsvSource"]
