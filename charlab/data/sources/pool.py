"""Decoding many images in a pool of processes, and the one way charlab opens an image.

PNG decoding is ~6 ms per 1200×900 Chars74K image and cannot be skipped (Pillow's draft()
does nothing for PNG), so big sets are decoded by worker processes. Each job opens a zip once
(`Originals`) and reads entries straight from it; nothing is ever extracted to disk. Every image
charlab reads, in a pool or one at a time (`open_image` for predict), goes through `read_image`:
the pixel-count check and EXIF orientation happen in that one place.
"""
from __future__ import annotations

import io
import multiprocessing as mp
import os
import re
import warnings
import zipfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import numpy as np
from PIL import Image, ImageOps

from ...config import DataConfig
from ...errors import DataError
from .._registry import Progress
from ..dataset import content_hash
from ..geometry import side_dim
from ..preprocess import MAX_IMAGE_PIXELS, preprocess_array, preprocess_image_side

if TYPE_CHECKING:  # building a dataset needs torch; importing this module (the sidebar does) must not
    from ..dataset import CharDataset

_CHUNK_TARGET = 4  # chunks per worker at least, so progress moves and the load balances
_EXIF_ORIENTATION = 0x0112


def n_workers() -> int:
    env = os.environ.get("CHARLAB_WORKERS")
    if env:
        return max(1, int(env))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def read_image(data: bytes, draft_size: Optional[int] = None, grayscale: bool = True) -> Image.Image:
    """Encoded bytes -> an upright, loaded Pillow image. Raises Image.DecompressionBombError above
    MAX_IMAGE_PIXELS (checked from the header, before any pixel is allocated), and Pillow's own
    errors on anything unreadable.

    An EXIF orientation tag (phones write it instead of rotating the pixels) is applied, so a
    rotated JPEG or PNG reads like the same image stored upright. `draft_size`: a JPEG may decode
    at 1/2, 1/4, 1/8 scale directly while staying >= that many pixels a side.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > MAX_IMAGE_PIXELS:
            raise Image.DecompressionBombError(f"{w}×{h} pixels")
        if draft_size and img.format == "JPEG":
            img.draft("L" if grayscale else None, (draft_size, draft_size))
        img.load()
        if img.getexif().get(_EXIF_ORIENTATION, 1) != 1:
            img = ImageOps.exif_transpose(img)
    return img


def decode_image_bytes(data: bytes, cfg: DataConfig) -> np.ndarray:
    """Encoded image bytes -> uint8 S×S. Raises on anything unreadable (the caller records why)."""
    return decode_image_side(data, cfg)[0]


def decode_image_side(data: bytes, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Encoded image bytes -> (uint8 S×S, the side vector of the file's page or None when off)."""
    # keep >= 8*S px for the precise resize
    return preprocess_image_side(read_image(data, 8 * cfg.image_size, cfg.grayscale), cfg)


def skip_reason(e: BaseException) -> str:
    """One line for the skipped-files list: why this file could not be used."""
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"image too large, a possible decompression bomb ({e}); limit {MAX_IMAGE_PIXELS:,} pixels"
    if isinstance(e, Image.UnidentifiedImageError):
        return "cannot decode image: not a recognised image format, or corrupt"
    msg = re.sub(r"\s*<[^>]* at 0x[0-9a-f]+>", "", str(e).splitlines()[0] if str(e) else "")[:160]
    return f"cannot decode image: {type(e).__name__}{': ' + msg if msg else ''}"


class Originals:
    """Reads original image files by the references CharDataset.paths stores (a file, or
    `x.zip!/entry`), opening each zip once: parsing a 3,410-entry zip's directory cost more than
    thinning the image read from it. A context manager: the zips close on exit. One per worker
    job, never shared between processes (a forked child would share the parent's file offset)."""

    def __init__(self):
        self._zips: dict[str, zipfile.ZipFile] = {}

    def entry(self, archive: str, name: str) -> bytes:
        z = self._zips.get(archive)
        if z is None:
            z = self._zips[archive] = zipfile.ZipFile(archive)
        return z.read(name)

    def read(self, ref: str) -> bytes:
        archive, sep, name = ref.partition("!/")
        if sep:
            return self.entry(archive, name)
        with open(ref, "rb") as f:
            return f.read()

    def open(self, ref: str) -> Image.Image:
        """The image at `ref` through read_image; anything unreadable is a DataError naming the file."""
        try:
            return read_image(self.read(ref))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise DataError(f"cannot open image {ref}: too large, a possible decompression bomb ({e})") from None
        except (OSError, KeyError, zipfile.BadZipFile, ValueError, SyntaxError) as e:
            raise DataError(f"cannot open image {ref}: {e}") from None

    def close(self) -> None:
        for z in self._zips.values():
            z.close()
        self._zips.clear()

    def __enter__(self) -> "Originals":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _decode_chunk(job: tuple) -> tuple[np.ndarray, list[tuple[int, str]], list[str], np.ndarray]:
    """Worker: decode one chunk of files; failures come back as (index in chunk, reason).
    Also the content hash of each file's bytes ("" for a failed one), read here anyway, and
    each page's side vector (n×G float32; G = 0 when cfg.side_inputs is off)."""
    kind, root, rels, cfg = job
    out = np.zeros((len(rels), cfg.image_size, cfg.image_size), np.uint8)
    side = np.zeros((len(rels), side_dim(cfg.side_inputs)), np.float32)  # n×G
    failed, hashes = [], [""] * len(rels)
    with Originals() as files:
        for i, rel in enumerate(rels):
            try:
                data = files.entry(root, rel) if kind == "zip" else files.read(os.path.join(root, rel))
                hashes[i] = content_hash(data)
                out[i], s = decode_image_side(data, cfg)
                if s is not None:
                    side[i] = s
            except Exception as e:  # noqa: BLE001 - Pillow raises many types for broken files; each is one skip
                failed.append((i, skip_reason(e)))
    return out, failed, hashes, side


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


def chunks(n: int, min_size: int = 16, max_size: int = 512) -> list[tuple[int, int]]:
    size = int(np.clip(n // (n_workers() * _CHUNK_TARGET * 2) or 1, min_size, max_size))
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def decode_files(kind: str, root, rels: Sequence[str], cfg: DataConfig, progress: Progress | None,
                 message: str) -> tuple[np.ndarray, list[tuple[int, str]], list[str], np.ndarray]:
    """Decode files of a folder or zip -> (uint8 n×S×S, [(index, reason)] of the failed ones,
    content hash of each file's bytes, float32 n×G side vectors (G = 0 when off))."""
    bounds = chunks(len(rels))
    jobs = [(kind, str(root), list(rels[a:b]), cfg) for a, b in bounds]
    results = map_chunks(_decode_chunk, jobs, [b - a for a, b in bounds], progress, message)
    images = np.concatenate([r[0] for r in results]) if results else np.zeros((0, cfg.image_size, cfg.image_size), np.uint8)
    failed = [(a + i, reason) for (a, _), r in zip(bounds, results) for i, reason in r[1]]
    g = side_dim(cfg.side_inputs)
    side = np.concatenate([r[3] for r in results]) if results else np.zeros((0, g), np.float32)  # n×G
    return images, failed, [h for r in results for h in r[2]], side


def preprocess_arrays(arrays: np.ndarray, cfg: DataConfig, progress: Progress | None,
                      message: str) -> tuple[np.ndarray, list[str]]:
    """Raw n×h×w uint8 (CSV rows, idx images) -> (preprocessed n×S×S, content hash of each raw array),
    in the pool when large."""
    bounds = chunks(len(arrays), 256, 4096)
    results = map_chunks(_preprocess_chunk, [(arrays[a:b], cfg) for a, b in bounds], [b - a for a, b in bounds],
                         progress, message)
    hashes = [h for r in results for h in r[2]]
    if not results:
        return np.zeros((0, cfg.image_size, cfg.image_size), np.uint8), hashes
    return np.concatenate([r[0] for r in results]), hashes


def build_dataset(images: np.ndarray, names: Sequence[str], paths: Optional[list[str]], skipped: list[dict],
                  source: str, info: dict, classes: Optional[list[str]] = None,
                  hashes: Optional[list[str]] = None) -> "CharDataset":
    """n×S×S uint8 + per-image class names -> CharDataset, classes in charlab's order."""
    import torch

    from ..classes import sort_classes
    from ..dataset import CharDataset

    classes = classes or sort_classes(names)
    index = {c: i for i, c in enumerate(classes)}
    labels = torch.tensor([index[n] for n in names], dtype=torch.int64)
    return CharDataset(images=torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1),  # N×1×S×S
                       labels=labels, classes=list(classes), paths=paths, skipped=skipped, source=source, info=info,
                       hashes=hashes)
