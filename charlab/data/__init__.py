"""charlab's data core: sources -> cached uint8 datasets -> splits, plus preprocessing and class stats.

    from charlab.data import load_source, load_splits
    ds = load_source("../shared/data/chars74k_hnd/trainPart1.zip")   # 62 classes, N×1×28×28 uint8
    splits = load_splits(DataConfig(source="synthetic"))

Importing this package registers every named source (synthetic, mnist, emnist, ...).
"""
from ._registry import SOURCES, Progress
from .cache import cache_dir, clear_cache
from .classes import CHARS62, EMNIST_CLASSES, chars74k_class_name, class_sort_key, sort_classes
from .dataset import CharDataset, to_float
from .preprocess import preprocess_array, preprocess_image, preprocess_ink
from .sources import load_source, load_test_source, open_image, read_idx, source_counts
from .splits import Splits, align_classes, load_splits, stratified_split
from .stats import ClassStats, class_stats, sample_grid

from . import synthetic  # noqa: E402,F401 - registers the "synthetic" source
from . import digitsum  # noqa: E402,F401 - registers the "digitsum" source

__all__ = [
    "SOURCES", "Progress", "cache_dir", "clear_cache", "CHARS62", "EMNIST_CLASSES", "chars74k_class_name",
    "class_sort_key", "sort_classes", "CharDataset", "to_float", "preprocess_array", "preprocess_image",
    "preprocess_ink", "load_source", "load_test_source", "open_image", "read_idx", "source_counts", "Splits",
    "align_classes", "load_splits", "stratified_split", "ClassStats", "class_stats", "sample_grid",
]
