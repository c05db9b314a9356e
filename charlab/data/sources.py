"""Data sources: one string -> a cached `CharDataset`.

- `name` or `name:ARG` where name is registered in `SOURCES` (synthetic, mnist, emnist, ...);
- otherwise a path: a folder or a `.zip` in the class-per-subfolder layout (possibly under a
  wrapper folder, possibly split into train/ and test/), or a `.csv` of flattened images with
  the label first (the Kaggle layout).

Big image sets are decoded in a pool of processes (PNG decoding is ~6 ms per 1200×900 image
and cannot be skipped: Pillow's draft() does nothing for PNG). Workers open a zip once each
and read entries straight from it; nothing is ever extracted to disk.
"""
from __future__ import annotations

import gzip
import hashlib
import inspect
import io
import multiprocessing as mp
import os
import re
import socket
import warnings
import zipfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from ..config import DataConfig
from ..errors import CharlabError, DataError
from . import cache
from ._registry import SOURCES, Progress
from .classes import EMNIST_CLASSES, chars74k_class_name, label_names, natural_key, sort_classes
from .dataset import CharDataset, content_hash
from .preprocess import MAX_IMAGE_PIXELS, preprocess_array, preprocess_image

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".pnm"}
_TRAIN_DIRS = {"train", "training"}
_TEST_DIRS = {"test", "testing"}
_VAL_DIRS = {"val", "valid", "validation"}  # merged into train: charlab carves its own stratified validation split
MAX_ZIP_BYTES = 4 << 30  # total uncompressed size a zip may declare; override with $CHARLAB_MAX_ZIP_BYTES
MAX_ENTRY_BYTES = 256 << 20  # one image file larger than this is skipped unread
_CHUNK_TARGET = 4  # chunks per worker at least, so progress moves and the load balances

Item = tuple[str, str]  # (file reference inside the source, class name)


# ---------------------------------------------------------------------------------------------
# Dispatch


def load_source(source: str, cfg: DataConfig | None = None, *, split: str = "train",
                progress: Progress | None = None) -> CharDataset | None:
    """Load a source string (see the module docstring) as uint8 N×1×S×S, cached on disk.

    Returns None only for split="test" when the source has no test split of its own.
    """
    cfg = cfg or DataConfig()
    cfg.validate()
    if split not in ("train", "test"):
        raise CharlabError(f"split must be 'train' or 'test', got {split!r}")
    named = parse_named(source)
    if named is not None:
        return _load_named(source, named[0], named[1], cfg, split, progress)
    return _load_path(existing_path(source), source, cfg, split, progress)


def load_test_source(source: str, cfg: DataConfig, progress: Progress | None = None, *,
                     train_source: str | None = None) -> CharDataset:
    """An explicit test source: its own test part when it has one (a test/ folder, MNIST's t10k),
    otherwise all of it. A CSV test source with numeric labels names them like `train_source`."""
    named = parse_named(source)
    if named is not None:
        ds = _load_named(source, named[0], named[1], cfg, "test", progress)
        return ds if ds is not None else _load_named(source, named[0], named[1], cfg, "train", progress)
    path = existing_path(source)
    if path.suffix.lower() == ".csv" and train_source and Path(train_source).suffix.lower() == ".csv" \
            and Path(train_source).is_file():
        return _load_csv(path, source, cfg, "testsource", progress, table=csv_train_table(Path(train_source)))
    return _load_path(path, source, cfg, "testsource", progress)


def parse_named(source: str) -> tuple[str, str] | None:
    """("mnist", "/data") for "mnist:/data"; None when the text before ':' is not a registered name."""
    name, _, arg = source.strip().partition(":")
    return (name, arg) if name in SOURCES else None


def existing_path(source: str) -> Path:
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"data source not found: {source} is neither an existing file or folder nor a named "
                        f"source ({', '.join(SOURCES.names())})")
    return path


def _code_fingerprint() -> list:
    """Sizes and mtimes of the data package's code: generated sources are rebuilt when it changes."""
    here = Path(__file__).parent
    return [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(here.glob("*.py"))]


def _load_named(source: str, name: str, arg: str, cfg: DataConfig, split: str,
                progress: Progress | None) -> CharDataset | None:
    loader = SOURCES.get(name)
    fingerprint = getattr(loader, "fingerprint", None)
    key = cache.cache_key({"kind": "named", "name": name, "arg": arg, "split": split, "seed": cfg.seed,
                           "prep": cache.prep_options(cfg), "code": _code_fingerprint(),
                           "files": fingerprint(arg, split) if fingerprint else None})
    ds = cache.load_cached(key, source)
    if ds is not None:
        return ds
    ds = loader(arg, cfg, split, progress)
    if ds is None:
        return None
    ds.source = ds.source or source
    cache.save_cached(key, ds)
    return ds


# ---------------------------------------------------------------------------------------------
# Listing folders and zips (no decoding)


@dataclass
class Listing:
    """The files of a folder or zip, relative and '/'-separated, with what was refused up front."""

    root: Path
    kind: str  # "folder" | "zip"
    files: list[str] = field(default_factory=list)
    dirs: set[str] = field(default_factory=set)
    skipped: list[dict] = field(default_factory=list)
    fingerprint: str = ""

    def ref(self, rel: str) -> str:
        """The printable origin of one file: a path, or `archive.zip!/entry`."""
        return f"{self.root}!/{rel}" if self.kind == "zip" else str(self.root / rel)


def _metadata_name(rel: str) -> bool:
    return rel.startswith(("__MACOSX/", ".")) or "/." in rel


def _unsafe_zip_name(name: str) -> bool:
    parts = re.split(r"[\\/]", name)
    return name.startswith(("/", "\\")) or bool(re.match(r"^[A-Za-z]:", name)) or ".." in parts


def _max_zip_bytes() -> int:
    try:
        return int(os.environ.get("CHARLAB_MAX_ZIP_BYTES") or MAX_ZIP_BYTES)
    except ValueError:
        raise CharlabError(f"CHARLAB_MAX_ZIP_BYTES must be a number of bytes, got {os.environ['CHARLAB_MAX_ZIP_BYTES']!r}") from None


def _is_image(rel: str) -> bool:
    return os.path.splitext(rel)[1].lower() in IMAGE_EXTS  # pathlib costs ~20 µs a name: 1 s per 60,000 files


def _classify_file(listing: Listing, rel: str, size: int) -> None:
    if _metadata_name(rel):
        listing.skipped.append({"path": listing.ref(rel), "reason": "hidden or macOS metadata file"})
    elif not _is_image(rel):
        listing.skipped.append({"path": listing.ref(rel), "reason": "not an image file"})
    elif size > MAX_ENTRY_BYTES:
        listing.skipped.append({"path": listing.ref(rel), "reason": f"file too large ({size >> 20} MiB) for one character image"})
    else:
        listing.files.append(rel)


def list_zip(path: Path) -> Listing:
    listing = Listing(root=path.resolve(), kind="zip")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise DataError(f"{path} is not a readable zip file: {e}") from None
    total = sum(i.file_size for i in infos)
    limit = _max_zip_bytes()
    if total > limit:
        raise DataError(f"{path}: its entries would expand to {total / 2**30:.1f} GiB, over the {limit / 2**30:.1f} GiB "
                        "limit (a zip bomb, or a dataset to unpack as a folder; CHARLAB_MAX_ZIP_BYTES raises the limit)")
    listing.fingerprint = hashlib.sha256(repr(cache.file_fingerprint(path)).encode()).hexdigest()
    for info in infos:
        name = info.filename
        if _unsafe_zip_name(name):
            listing.skipped.append({"path": listing.ref(name), "reason": "unsafe path in zip (absolute or '..'): not read"})
        elif info.is_dir():
            listing.dirs.add(name.rstrip("/"))
        elif info.flag_bits & 0x1:
            listing.skipped.append({"path": listing.ref(name), "reason": "encrypted zip entry"})
        else:
            _classify_file(listing, name, info.file_size)
    return listing


def list_folder(path: Path) -> Listing:
    listing = Listing(root=path.resolve(), kind="folder")
    digest = hashlib.sha256(str(listing.root).encode())
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            entries = sorted(os.scandir(listing.root / rel_dir), key=lambda e: e.name)
        except OSError as e:
            listing.skipped.append({"path": str(listing.root / rel_dir), "reason": f"cannot list folder: {e.strerror or e}"})
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    listing.dirs.add(rel)
                    stack.append(rel)
                    continue
                st = entry.stat()
            except OSError as e:
                listing.skipped.append({"path": listing.ref(rel), "reason": f"cannot read: {e.strerror or e}"})
                continue
            digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            _classify_file(listing, rel, st.st_size)
    listing.fingerprint = digest.hexdigest()
    return listing


def list_source(path: Path) -> Listing:
    if path.is_dir():
        return list_folder(path)
    if path.suffix.lower() == ".zip":
        return list_zip(path)
    raise DataError(f"{path} is not a folder, a .zip or a .csv file")


# ---------------------------------------------------------------------------------------------
# Layout: which files are train / test and which class each belongs to


@dataclass
class Layout:
    train: list[Item]
    test: list[Item]
    has_train: bool  # a train/ folder, or a class-per-subfolder tree without split folders
    has_test: bool
    skipped: list[dict]
    notes: list[str]

    def part(self, role: str) -> list[Item] | None:
        """train | test | testsource (an explicit test source: its test part, else all of it).
        None for "test" when the source has no test part: the caller looks for a sibling."""
        if role == "train":
            return self.train
        if self.has_test and self.has_train:
            return self.test
        return self.train if role == "testsource" else None




def layout(listing: Listing) -> Layout:
    """Find the class folders: below single wrapper folders, optionally under train/ and test/.

    Chars74K's SampleNNN folder names become their characters.
    """
    parts = [f.split("/") for f in sorted(listing.files, key=natural_key)]
    skipped: list[dict] = []
    notes: list[str] = []
    level = 0
    while True:
        tops = {p[level] for p in parts if len(p) > level + 1}
        split_tops = {t for t in tops if t.lower() in _TRAIN_DIRS | _TEST_DIRS | _VAL_DIRS}
        if split_tops or len(tops) != 1:
            break
        # one wrapper folder: descend unless it holds images itself (then it is the only class)
        if any(len(p) <= level + 2 for p in parts):
            break
        level += 1
    split_mode = bool({t for t in tops if t.lower() in _TRAIN_DIRS | _TEST_DIRS})
    groups: dict[str, list[Item]] = {"train": [], "test": []}
    class_dirs: dict[str, str] = {}  # class folder rel path -> group, for the empty-folder check
    for p in parts:
        rel = "/".join(p)
        if split_mode:
            top = p[level].lower() if len(p) > level + 1 else ""
            group = "test" if top in _TEST_DIRS else "train" if top in _TRAIN_DIRS | _VAL_DIRS else None
            if group is None:
                skipped.append({"path": listing.ref(rel), "reason": "outside the train/ and test/ folders"})
                continue
            depth = level + 1
        else:
            group, depth = "train", level
        if len(p) <= depth + 1:
            skipped.append({"path": listing.ref(rel), "reason": "not inside a class folder"})
            continue
        class_dirs["/".join(p[:depth + 1])] = group
        groups[group].append((rel, chars74k_class_name(p[depth])))
    if split_mode and any(t.lower() in _VAL_DIRS for t in tops):
        notes.append("images in a val/ folder were merged into train; charlab carves its own stratified validation split")
    # class folders with no image at all (only explicit in folders, and in zips that list directories)
    class_level = level + 1 if split_mode else level
    for d in sorted(listing.dirs, key=natural_key):
        dp = d.split("/")
        if len(dp) != class_level + 1 or d in class_dirs or dp[:level] != (parts[0][:level] if parts else dp[:level]):
            continue
        if split_mode and dp[level].lower() not in _TRAIN_DIRS | _TEST_DIRS | _VAL_DIRS:
            continue
        if not any(f.startswith(d + "/") for f in listing.files):
            skipped.append({"path": listing.ref(d), "reason": "empty class folder"})
    has_train = bool(groups["train"]) or not split_mode
    has_test = bool(groups["test"])
    if split_mode and not groups["train"]:
        # only a test/ folder (e.g. testPart1.zip on its own): its images are the whole source
        groups["train"], has_train = groups["test"], False
    return Layout(train=groups["train"], test=groups["test"], has_train=has_train, has_test=has_test,
                  skipped=skipped, notes=notes)


def sibling_test(path: Path) -> Path | None:
    """trainPart1.zip -> testPart1.zip, data/train -> data/test, emnist-x-train.csv -> emnist-x-test.csv."""
    name = path.name

    def swap(m: re.Match) -> str:
        word = m.group(0)
        new = "testing" if word.lower() == "training" else "test"
        return new.upper() if word.isupper() else new.capitalize() if word[0].isupper() else new

    if not re.search(r"train", name, re.IGNORECASE):
        return None
    candidate = path.with_name(re.sub(r"training|train", swap, name, flags=re.IGNORECASE))
    return candidate if candidate != path and candidate.exists() else None


# ---------------------------------------------------------------------------------------------
# Decoding in a process pool


def n_workers() -> int:
    env = os.environ.get("CHARLAB_WORKERS")
    if env:
        return max(1, int(env))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


_ZIPS: dict[tuple[int, str], zipfile.ZipFile] = {}  # per worker process: each opens a zip once


def _read_bytes(kind: str, root: str, rel: str) -> bytes:
    if kind == "zip":
        key = (os.getpid(), root)
        zf = _ZIPS.get(key)
        if zf is None:
            zf = _ZIPS[key] = zipfile.ZipFile(root)
        return zf.read(rel)
    with open(os.path.join(root, rel), "rb") as f:
        return f.read()


def decode_image_bytes(data: bytes, cfg: DataConfig) -> np.ndarray:
    """Encoded image bytes -> uint8 S×S. Raises on anything unreadable (the caller records why)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > MAX_IMAGE_PIXELS:
            raise Image.DecompressionBombError(f"{w}×{h} pixels")
        if img.format == "JPEG":
            # JPEG can decode at 1/2, 1/4, 1/8 scale directly; keep >= 8*S px for the precise resize
            img.draft("L" if cfg.grayscale else None, (8 * cfg.image_size, 8 * cfg.image_size))
        return preprocess_image(img, cfg)


def _skip_reason(e: BaseException) -> str:
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"image too large, a possible decompression bomb ({e}); limit {MAX_IMAGE_PIXELS:,} pixels"
    if isinstance(e, Image.UnidentifiedImageError):
        return "cannot decode image: not a recognised image format, or corrupt"
    msg = re.sub(r"\s*<[^>]* at 0x[0-9a-f]+>", "", str(e).splitlines()[0] if str(e) else "")[:160]
    return f"cannot decode image: {type(e).__name__}{': ' + msg if msg else ''}"


def _decode_chunk(job: tuple) -> tuple[np.ndarray, list[tuple[int, str]], list[str]]:
    """Worker: decode one chunk of files; failures come back as (index in chunk, reason).
    Also the content hash of each file's bytes ("" for a failed one), read here anyway."""
    kind, root, rels, cfg = job
    out = np.zeros((len(rels), cfg.image_size, cfg.image_size), np.uint8)
    failed, hashes = [], [""] * len(rels)
    for i, rel in enumerate(rels):
        try:
            data = _read_bytes(kind, root, rel)
            hashes[i] = content_hash(data)
            out[i] = decode_image_bytes(data, cfg)
        except Exception as e:  # noqa: BLE001 - Pillow raises many types for broken files; each is one skip
            failed.append((i, _skip_reason(e)))
    return out, failed, hashes


def _preprocess_chunk(job: tuple) -> tuple[np.ndarray, list[tuple[int, str]], list[str]]:
    """Worker: preprocess a chunk of raw uint8 arrays (n×h×w) of either polarity; hashes of the raw pixels."""
    arrays, cfg = job
    out = np.zeros((len(arrays), cfg.image_size, cfg.image_size), np.uint8)
    hashes = []
    for i, a in enumerate(arrays):
        hashes.append(content_hash(np.ascontiguousarray(a).data))
        out[i] = preprocess_array(a, cfg)
    return out, [], hashes


def map_chunks(fn: Callable, jobs: Sequence[tuple], sizes: Sequence[int], progress: Progress | None,
               message: str) -> list:
    """fn over jobs, in order, in a process pool when it pays off; progress counts items, not jobs."""
    total, done, results = sum(sizes), 0, []
    workers = min(n_workers(), len(jobs))
    if progress:
        progress(0, total, message)
    pending = list(jobs)
    if workers > 1 and total >= 256 and not mp.current_process().daemon:  # daemons may not start processes
        # fork: workers start in milliseconds and inherit the imports (spawn would re-import torch,
        # ~2 s per worker here); PyTorch's DataLoader makes the same choice on Linux.
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        try:
            with ProcessPoolExecutor(workers, mp_context=ctx) as ex:
                for r in ex.map(fn, pending):
                    results.append(r)
                    done += sizes[len(results) - 1]
                    if progress:
                        progress(done, total, message)
        except (BrokenProcessPool, OSError):
            pass  # a worker died (memory?) or no processes may be started: finish in this process
    for job in pending[len(results):]:
        results.append(fn(job))
        done += sizes[len(results) - 1]
        if progress:
            progress(done, total, message)
    return results


def _chunks(n: int, min_size: int = 16, max_size: int = 512) -> list[tuple[int, int]]:
    size = int(np.clip(n // (n_workers() * _CHUNK_TARGET * 2) or 1, min_size, max_size))
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def decode_files(kind: str, root: Path, rels: Sequence[str], cfg: DataConfig, progress: Progress | None,
                 message: str) -> tuple[np.ndarray, list[tuple[int, str]], list[str]]:
    """Decode files of a folder or zip -> (uint8 n×S×S, [(index, reason)] of the failed ones,
    content hash of each file's bytes)."""
    bounds = _chunks(len(rels))
    jobs = [(kind, str(root), list(rels[a:b]), cfg) for a, b in bounds]
    results = map_chunks(_decode_chunk, jobs, [b - a for a, b in bounds], progress, message)
    for key in [k for k in _ZIPS if k[0] == os.getpid()]:  # decoded in this process: do not keep the zip open
        _ZIPS.pop(key).close()
    images = np.concatenate([r[0] for r in results]) if results else np.zeros((0, cfg.image_size, cfg.image_size), np.uint8)
    failed = [(a + i, reason) for (a, _), r in zip(bounds, results) for i, reason in r[1]]
    return images, failed, [h for r in results for h in r[2]]


def preprocess_arrays(arrays: np.ndarray, cfg: DataConfig, progress: Progress | None,
                      message: str) -> tuple[np.ndarray, list[str]]:
    """Raw n×h×w uint8 (CSV rows, idx images) -> (preprocessed n×S×S, content hash of each raw array),
    in the pool when large."""
    bounds = _chunks(len(arrays), 256, 4096)
    results = map_chunks(_preprocess_chunk, [(arrays[a:b], cfg) for a, b in bounds], [b - a for a, b in bounds],
                         progress, message)
    hashes = [h for r in results for h in r[2]]
    if not results:
        return np.zeros((0, cfg.image_size, cfg.image_size), np.uint8), hashes
    return np.concatenate([r[0] for r in results]), hashes


def build_dataset(images: np.ndarray, names: Sequence[str], paths: Optional[list[str]], skipped: list[dict],
                  source: str, info: dict, classes: Optional[list[str]] = None,
                  hashes: Optional[list[str]] = None) -> CharDataset:
    """n×S×S uint8 + per-image class names -> CharDataset, classes in charlab's order."""
    classes = classes or sort_classes(names)
    index = {c: i for i, c in enumerate(classes)}
    labels = torch.tensor([index[n] for n in names], dtype=torch.int64)
    return CharDataset(images=torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1),  # N×1×S×S
                       labels=labels, classes=list(classes), paths=paths, skipped=skipped, source=source, info=info,
                       hashes=hashes)


# ---------------------------------------------------------------------------------------------
# Folder / zip / csv sources


def _no_images_error(path: Path, skipped: list[dict], what: str = "image") -> DataError:
    reasons: dict[str, int] = {}
    for s in skipped:
        r = s["reason"].split(":")[0]
        reasons[r] = reasons.get(r, 0) + 1
    detail = "; ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:4])
    hint = "expected class-per-subfolder images (e.g. A/img1.png)" if what == "image" else what
    return DataError(f"no usable {'image' if what == 'image' else 'row'} in {path}: {hint}"
                     + (f"; skipped: {detail}" if detail else ""))


def _load_path(path: Path, source: str, cfg: DataConfig, role: str, progress: Progress | None) -> CharDataset | None:
    """role: train | test (the source's own test split, or None) | testsource (an explicit test source)."""
    if path.is_file() and path.suffix.lower() == ".csv":
        return _load_csv(path, source, cfg, role, progress)
    listing = list_source(path)
    key = cache.cache_key({"kind": listing.kind, "fingerprint": listing.fingerprint, "part": role,
                           "prep": cache.prep_options(cfg)})
    ds = cache.load_cached(key, source)  # before the layout: sorting 60,000 names costs more than the cache read
    if ds is not None:
        return ds
    lay = layout(listing)
    items = lay.part(role)
    if items is None:
        sib = sibling_test(path)
        if sib is None:
            return None
        return _load_path(sib, str(sib), cfg, "testsource", progress)
    skipped = listing.skipped + lay.skipped
    if not items:
        raise _no_images_error(path, skipped)
    images, failed, hashes = decode_files(listing.kind, listing.root, [rel for rel, _ in items], cfg, progress,
                                          f"decoding {path.name}")
    bad = {i for i, _ in failed}
    skipped += [{"path": listing.ref(items[i][0]), "reason": reason} for i, reason in failed]
    keep = [i for i in range(len(items)) if i not in bad]
    if not keep:
        raise _no_images_error(path, skipped)
    kept_classes = {items[i][1] for i in keep}
    for cls in sort_classes({c for _, c in items} - kept_classes):
        skipped.append({"path": f"{listing.root} [{cls}]", "reason": "no usable image in class folder"})
    ds = build_dataset(images[keep], [items[i][1] for i in keep], [listing.ref(items[i][0]) for i in keep], skipped,
                       source, {"root": str(listing.root), "kind": listing.kind, "part": role, "notes": lay.notes},
                       hashes=[hashes[i] for i in keep])
    cache.save_cached(key, ds)
    return ds


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
              table: dict[int, str] | None = None) -> CharDataset | None:
    import pandas as pd

    header, ncols = _csv_header(path)
    side = _csv_side(path, ncols)
    if role == "test":
        sib = sibling_test(path)
        if sib is None or _csv_header(sib)[1] != ncols:  # Kaggle's test.csv has no labels: not a test split
            return None
        return _load_csv(sib, str(sib), cfg, "testsource", progress, table=csv_train_table(path))
    key = cache.cache_key({"kind": "csv", "file": cache.file_fingerprint(path), "prep": cache.prep_options(cfg),
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


# ---------------------------------------------------------------------------------------------
# MNIST / EMNIST idx files


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
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
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
        return _IdxSpec("MNIST", Path(arg or cache.cache_dir() / "datasets").expanduser(), None)
    if arg in EMNIST_CLASSES:  # "emnist:letters": the default folder
        folder, split = "", arg
    else:
        folder, _, split = arg.rpartition(":") if re.search(r":[a-z]+$", arg) else (arg, "", "")
    split = split or "balanced"
    if split not in EMNIST_CLASSES:
        raise DataError(f"unknown EMNIST split {split!r}; valid: {', '.join(EMNIST_CLASSES)}")
    return _IdxSpec("EMNIST", Path(folder or cache.cache_dir() / "datasets").expanduser(), split)


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


def _load_idx(kind: str, arg: str, cfg: DataConfig, split: str, progress: Progress | None) -> CharDataset:
    spec = _idx_spec(kind, arg)
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
                       info={"root": str(spec.root), "kind": kind, "part": split}, hashes=hashes)


def _idx_fingerprint(kind: str) -> Callable[[str, str], list]:
    def fingerprint(arg: str, split: str) -> list:
        spec = _idx_spec(kind, arg)
        return [cache.file_fingerprint(p) if p else None for p in spec.find(split)]
    return fingerprint


def _idx_counts(kind: str) -> Callable[[str, str], tuple[list[str], np.ndarray]]:
    def counts(arg: str, split: str) -> tuple[list[str], np.ndarray]:
        spec = _idx_spec(kind, arg)
        classes, labels = _idx_labels(spec, _idx_files(spec, split)[1])
        return classes, np.bincount(labels, minlength=len(classes))
    return counts


@SOURCES.register("mnist")
def mnist_source(arg: str, cfg: DataConfig, split: str, progress: Progress | None) -> CharDataset:
    """`mnist:DIR`: MNIST idx files (raw or .gz) in DIR, DIR/raw or DIR/MNIST/raw; t10k is the test split."""
    return _load_idx("mnist", arg, cfg, split, progress)


@SOURCES.register("emnist")
def emnist_source(arg: str, cfg: DataConfig, split: str, progress: Progress | None) -> CharDataset:
    """`emnist:DIR[:split]`: EMNIST idx files of one split (balanced by default), transposition fixed."""
    return _load_idx("emnist", arg, cfg, split, progress)


mnist_source.fingerprint = _idx_fingerprint("mnist")
mnist_source.counts = _idx_counts("mnist")
emnist_source.fingerprint = _idx_fingerprint("emnist")
emnist_source.counts = _idx_counts("emnist")


# ---------------------------------------------------------------------------------------------
# Counting without decoding, and reading one original image back


def source_counts(source: str, progress: Progress | None = None, *,
                  split: str = "train") -> tuple[list[str], np.ndarray, list[dict]]:
    """(classes, counts, skipped) from listings and labels, without decoding images where possible.

    Folder and zip counts are of image files found (a corrupt file is counted until it is decoded);
    a CSV reads only its first column; MNIST/EMNIST read only the labels file; other named sources
    load (from the cache when it has them).
    """
    named = parse_named(source)
    if named is not None:
        counter = getattr(SOURCES.get(named[0]), "counts", None)
        if counter is not None:
            classes, counts = counter(named[1], split)
            return classes, counts, []
        ds = load_source(source, split=split, progress=progress)
        if ds is None:
            return [], np.zeros(0, np.int64), []
        return list(ds.classes), ds.counts(), list(ds.skipped)
    path = existing_path(source)
    if path.is_file() and path.suffix.lower() == ".csv":
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
    listing = list_source(path)
    lay = layout(listing)
    items = lay.part(split)
    if items is None:
        sib = sibling_test(path)
        if sib is None:
            return [], np.zeros(0, np.int64), []
        listing = list_source(sib)
        lay = layout(listing)
        items = lay.part("testsource")
    classes = sort_classes(c for _, c in items)
    index = {c: i for i, c in enumerate(classes)}
    counts = np.bincount([index[c] for _, c in items], minlength=len(classes)).astype(np.int64)
    return classes, counts, listing.skipped + lay.skipped


def open_image(ref: str) -> Image.Image:
    """Open an original image by the reference stored in CharDataset.paths (a file or `x.zip!/entry`)."""
    zip_path, sep, entry = ref.partition("!/")
    try:
        if sep:
            with zipfile.ZipFile(zip_path) as zf:
                data = zf.read(entry)
        else:
            with open(ref, "rb") as f:
                data = f.read()
        img = Image.open(io.BytesIO(data))
        img.load()
        return img
    except (OSError, KeyError, zipfile.BadZipFile, Image.DecompressionBombError) as e:
        raise DataError(f"cannot open image {ref}: {e}") from None
