"""The on-disk cache of loaded datasets: raw uint8 tensors, keyed by content and options.

A key hashes the source's fingerprint (for files: resolved path, size and mtime_ns of every
file read; for named sources: their argument string and the code that generates them), every
preprocessing option and `CACHE_FORMAT`. A changed file, option or format misses the cache.
Entries are written atomically; one that cannot be read (torn, corrupt, from another torch) is
ignored and rebuilt. Directory: `$CHARLAB_CACHE_DIR`, default `~/.cache/charlab`.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from ..config import DataConfig
from ..errors import CharlabError
from ..io import atomic_write
from .preprocess import PREPROCESS_VERSION

if TYPE_CHECKING:  # torch is imported by the functions that read and write entries
    from .dataset import CharDataset

CACHE_FORMAT = 3  # bump when the stored layout or a loader's output changes (3: per-image content hashes)


def cache_dir() -> Path:
    """Read at every call, so a test (or a user) can point it elsewhere with the environment."""
    return Path(os.environ.get("CHARLAB_CACHE_DIR") or Path.home() / ".cache" / "charlab")


def prep_options(cfg: DataConfig) -> dict:
    """The DataConfig fields that change a loaded image (the split fields do not)."""
    opts = {**cfg.preprocessing(), "preprocess": PREPROCESS_VERSION}
    if not opts.get("stroke_norm"):
        opts.pop("stroke_norm", None)  # absent when off: old entries stay valid
    if not opts.get("side_inputs"):
        opts.pop("side_inputs", None)
    return opts


def cache_key(parts: dict) -> str:
    blob = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def file_stamp(path: str | os.PathLike) -> list:
    """[resolved path, size, mtime_ns]: a cheap identity of a file for cache keys (no content read;
    `predict.file_fingerprint` is the content hash that names a checkpoint)."""
    p = Path(path).resolve()
    st = p.stat()
    return [str(p), st.st_size, st.st_mtime_ns]


def _entry_path(key: str) -> Path:
    return cache_dir() / "data" / f"{key}.pt"


def load_cached(key: str, source: Optional[str] = None) -> Optional["CharDataset"]:
    """The cached dataset, or None; `source` replaces the stored source string (same data, other spelling)."""
    import torch

    from .dataset import CharDataset

    path = _entry_path(key)
    if not path.exists():
        return None
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
        if d.get("format") != CACHE_FORMAT:
            return None
        paths = d["paths"].split("\0") if isinstance(d["paths"], str) else d["paths"]
        hashes = d["hashes"].split("\0") if isinstance(d["hashes"], str) else d["hashes"]
        ds = CharDataset(images=d["images"], labels=d["labels"], classes=list(d["classes"]), paths=paths,
                         skipped=list(d["skipped"]), source=d["source"], info=dict(d["info"]), hashes=hashes)
    except Exception:  # noqa: BLE001 - any unreadable entry (torn write, old torch, garbage) is simply rebuilt
        return None
    ds.info["cached"] = True
    if source is not None:
        ds.source = source
    return ds


def save_cached(key: str, ds: "CharDataset") -> None:
    """Best effort: a read-only or full cache directory must not stop the data from loading."""
    import torch

    info = {k: v for k, v in ds.info.items() if k != "cached"}
    # paths as one NUL-joined string: torch's weights-only unpickler takes ~1 s for a list of 60,000 str
    paths = "\0".join(ds.paths) if ds.paths else ds.paths
    hashes = "\0".join(ds.hashes) if ds.hashes else ds.hashes
    obj: dict[str, Any] = {"format": CACHE_FORMAT, "images": ds.images.contiguous(), "labels": ds.labels,
                           "classes": list(ds.classes), "paths": paths, "skipped": list(ds.skipped),
                           "source": ds.source, "info": info, "hashes": hashes}
    try:
        atomic_write(_entry_path(key), lambda f: torch.save(obj, f))
    except (OSError, CharlabError) as e:
        warnings.warn(f"charlab: could not write the data cache in {cache_dir()}: {e}", RuntimeWarning, stacklevel=2)


def clear_cache() -> int:
    """Delete every cached dataset; returns how many files were removed."""
    n = 0
    for p in (cache_dir() / "data").glob("*.pt"):
        try:
            p.unlink()
            n += 1
        except FileNotFoundError:
            pass
    return n
