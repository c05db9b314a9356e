"""charlab's data core: sources -> cached uint8 datasets -> splits, plus preprocessing and class stats.

    from charlab.data import load_source, load_splits
    ds = load_source("../shared/data/chars74k_hnd/trainPart1.zip")   # 62 classes, N×1×28×28 uint8
    splits = load_splits(DataConfig(source="synthetic"))

Names are imported on first use (PEP 562), so `charlab.data.sources` (the source kinds and the
options the sidebar shows) loads without torch; asking for a source kind, or for `SOURCES`,
registers every kind (synthetic, folder/zip, csv, mnist/emnist, digitsum).
"""
from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "SOURCES": "sources", "Progress": "_registry", "cache_dir": "cache", "clear_cache": "cache",
    "CHARS62": "classes", "EMNIST_CLASSES": "classes", "chars74k_class_name": "classes",
    "class_sort_key": "classes", "sort_classes": "classes", "CharDataset": "dataset", "to_float": "dataset",
    "preprocess_array": "preprocess", "preprocess_image": "preprocess", "preprocess_ink": "preprocess",
    "load_source": "sources", "load_test_source": "sources", "open_image": "sources", "read_idx": "sources",
    "source_counts": "sources", "resolve": "sources", "Source": "sources", "Option": "sources",
    "Splits": "splits", "align_classes": "splits", "load_splits": "splits", "stratified_split": "splits",
    "ClassStats": "stats", "class_stats": "stats", "sample_grid": "stats", "tile": "stats",
}

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'charlab.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
