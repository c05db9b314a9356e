"""Folders and zips in the class-per-subfolder layout: `A/img1.png`, possibly under a wrapper
folder, possibly split into train/ and test/ (val/ merges into train), Chars74K's SampleNNN
folder names read as their characters. A sibling `test` zip or folder is the test split.

Listing reads names and sizes only; decoding happens in the pool (`pool.py`) and is cached
by the listing's fingerprint (names, sizes, mtimes), checked before anything is decoded.
"""
from __future__ import annotations

import hashlib
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from ...config import DataConfig
from ...errors import CharlabError, DataError
from .._registry import SOURCES, Progress
from ..cache import file_stamp
from ..classes import chars74k_class_name, natural_key, sort_classes
from .base import Counts, Option, PathSource
from .pool import Originals, build_dataset, decode_files

if TYPE_CHECKING:
    from PIL import Image

    from ..dataset import CharDataset

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".pnm"}
_TRAIN_DIRS = {"train", "training"}
_TEST_DIRS = {"test", "testing"}
_VAL_DIRS = {"val", "valid", "validation"}  # merged into train: charlab carves its own stratified validation split
MAX_ZIP_BYTES = 4 << 30  # total uncompressed size a zip may declare; override with $CHARLAB_MAX_ZIP_BYTES
MAX_ZIP_ENTRIES = 2_000_000  # entries a zip may hold (EMNIST byclass has 814,255 images); $CHARLAB_MAX_ZIP_ENTRIES
MAX_ENTRY_BYTES = 256 << 20  # one image file larger than this is skipped unread

Item = tuple[str, str]  # (file reference inside the source, class name)


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


def env_limit(name: str, default: int, unit: str) -> int:
    """A size cap, overridable by the environment variable `name`."""
    try:
        return int(os.environ.get(name) or default)
    except ValueError:
        raise CharlabError(f"{name} must be a number of {unit}, got {os.environ[name]!r}") from None


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
    max_entries = env_limit("CHARLAB_MAX_ZIP_ENTRIES", MAX_ZIP_ENTRIES, "entries")
    if len(infos) > max_entries:
        raise DataError(f"{path} holds {len(infos):,} entries, over the {max_entries:,} limit (a zip bomb of tiny "
                        "files, or a dataset to unpack as a folder; CHARLAB_MAX_ZIP_ENTRIES raises the limit)")
    total = sum(i.file_size for i in infos)
    limit = env_limit("CHARLAB_MAX_ZIP_BYTES", MAX_ZIP_BYTES, "bytes")
    if total > limit:
        raise DataError(f"{path}: its entries would expand to {total / 2**30:.1f} GiB, over the {limit / 2**30:.1f} GiB "
                        "limit (a zip bomb, or a dataset to unpack as a folder; CHARLAB_MAX_ZIP_BYTES raises the limit)")
    listing.fingerprint = hashlib.sha256(repr(file_stamp(path)).encode()).hexdigest()
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



def _no_images_error(path: Path, skipped: list[dict], what: str = "image") -> DataError:
    reasons: dict[str, int] = {}
    for s in skipped:
        r = s["reason"].split(":")[0]
        reasons[r] = reasons.get(r, 0) + 1
    detail = "; ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:4])
    hint = "expected class-per-subfolder images (e.g. A/img1.png)" if what == "image" else what
    return DataError(f"no usable {'image' if what == 'image' else 'row'} in {path}: {hint}"
                     + (f"; skipped: {detail}" if detail else ""))



def _load_path(path: Path, source: str, cfg: DataConfig, role: str, progress: Progress | None) -> Optional["CharDataset"]:
    """role: train | test (the source's own test split, or None) | testsource (an explicit test source)."""
    from .. import cache

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
    images, failed, hashes, side = decode_files(listing.kind, listing.root, [rel for rel, _ in items], cfg, progress,
                                          f"decoding {path.name}")
    bad = {i for i, _ in failed}
    skipped += [{"path": listing.ref(items[i][0]), "reason": reason} for i, reason in failed]
    keep = [i for i in range(len(items)) if i not in bad]
    if not keep:
        raise _no_images_error(path, skipped)
    kept_classes = {items[i][1] for i in keep}
    for cls in sort_classes({c for _, c in items} - kept_classes):
        skipped.append({"path": f"{listing.root} [{cls}]", "reason": "no usable image in class folder"})
    info = {"root": str(listing.root), "kind": listing.kind, "part": role, "notes": lay.notes}
    if cfg.side_inputs:
        import torch

        info["side"] = torch.from_numpy(np.ascontiguousarray(side[keep]))  # float32 N×G: CharDataset.side
    ds = build_dataset(images[keep], [items[i][1] for i in keep], [listing.ref(items[i][0]) for i in keep], skipped,
                       source, info, hashes=[hashes[i] for i in keep])
    cache.save_cached(key, ds)
    return ds


@SOURCES.register("path")
class FileSource(PathSource):
    """A folder or a .zip of class folders."""

    title = "Folder or zip"
    pages = True
    help = ("One subfolder per class (Chars74K's SampleNNN names are mapped to their characters), possibly "
            "split into train/ and test/. A sibling test zip or test/ folder becomes the test split.")
    options = (Option("path", str, "", label="Path to a folder or .zip", placeholder="/data/chars74k_hnd/trainPart1.zip",
                      help="One subfolder per class. A sibling test zip or test/ folder becomes the test split."),)
    menu = 20

    @classmethod
    def claims(cls, path: Path) -> bool:
        return path.is_dir() or path.suffix.lower() == ".zip"

    def check(self) -> None:
        if self.path.is_file():
            list_zip(self.path)  # the central directory only: unreadable, bomb and entry caps show here

    def load(self, cfg: DataConfig, split: str, progress: Progress | None) -> Optional["CharDataset"]:
        return _load_path(self.path, self.text, cfg, split, progress)

    def load_test(self, cfg: DataConfig, progress: Progress | None, train_source: Optional[str] = None) -> "CharDataset":
        return _load_path(self.path, self.text, cfg, "testsource", progress)

    def counts(self, split: str = "train", progress: Progress | None = None) -> Counts:
        """Image files found, per class: a corrupt file counts until it is decoded (the decoded
        dataset's counts and `skipped` are the ones to show where it has been loaded)."""
        listing = list_source(self.path)
        lay = layout(listing)
        items = lay.part(split)
        if items is None:
            sib = sibling_test(self.path)
            if sib is None:
                return [], np.zeros(0, np.int64), []
            listing = list_source(sib)
            lay = layout(listing)
            items = lay.part("testsource")
        classes = sort_classes(c for _, c in items)
        index = {c: i for i, c in enumerate(classes)}
        counts = np.bincount([index[c] for _, c in items], minlength=len(classes)).astype(np.int64)
        return classes, counts, listing.skipped + lay.skipped


def open_image(ref: str) -> "Image.Image":
    """Open an original image by the reference stored in CharDataset.paths (a file or `x.zip!/entry`),
    upright (EXIF orientation applied) and within the pixel limit, like every image charlab decodes."""
    with Originals() as files:
        return files.open(ref)
