"""Data loading: first and cached load of the Chars74K zips and of a 60,000-JPEG folder, against a naive loop.

The naive alternative is the obvious script: one process, PIL decode at full size, convert to
grey, numpy crop, PIL resize, per file. It runs on a sample of the same files and is
extrapolated to the whole set (labelled `_extrapolated`). CPU seconds are reported beside wall
seconds: on a shared machine they barely move with other users' load, so CPU / workers is the
idle-machine estimate (labelled as such). First loads run against an empty
temporary cache; `cached` is the second call of the same load. The JPEG folder is generated
into a temporary folder first (from the synthetic source when it is registered, else from
a font renderer); the generation is not timed.
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import string
import tempfile
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import CHARS74K


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chars74k", default=str(CHARS74K),
                   help="folder holding trainPart1.zip and testPart1.zip")
    p.add_argument("--jpegs", type=int, default=60_000, help="images in the generated JPEG folder (0 skips it)")
    p.add_argument("--naive-sample", type=int, default=300, help="files the naive loop decodes before extrapolating")
    p.add_argument("--workdir", default=None, help="where to generate the JPEG folder (default: the system temp dir)")


@contextmanager
def _fresh_cache():
    """An empty cache directory for the duration, so a first load really is a first load."""
    old = os.environ.get("CHARLAB_CACHE_DIR")
    tmp = tempfile.mkdtemp(prefix="charlab-bench-cache-")
    os.environ["CHARLAB_CACHE_DIR"] = tmp
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is None:
            os.environ.pop("CHARLAB_CACHE_DIR", None)
        else:
            os.environ["CHARLAB_CACHE_DIR"] = old


def _cpu_s() -> float:
    """CPU seconds of this process and its reaped children (the decode workers, once the pool closes)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(fn, cpu: dict | None = None):
    """(result, wall seconds); with `cpu`, also stores the CPU seconds spent in cpu["s"].

    CPU seconds hardly move with the load other users put on a shared machine, so
    cpu / workers estimates the wall time on an idle machine with that many cores.
    """
    t, c = time.perf_counter(), _cpu_s()
    out = fn()
    if cpu is not None:
        cpu["s"] = _cpu_s() - c
    return out, time.perf_counter() - t


def naive_preprocess(data: bytes, size: int = 28) -> np.ndarray:
    """The obvious per-file script: full-size decode, grey, invert, crop to ink, pad, resize."""
    a = 255 - np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.uint8)
    ys, xs = np.nonzero(a > 50)
    if len(ys):
        a = a[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    side = int(max(a.shape) / 0.7) + 1
    sq = np.zeros((side, side), np.uint8)
    y0, x0 = (side - a.shape[0]) // 2, (side - a.shape[1]) // 2
    sq[y0:y0 + a.shape[0], x0:x0 + a.shape[1]] = a
    return np.asarray(Image.fromarray(sq).resize((size, size), Image.Resampling.BILINEAR))


def _naive_rate(read_all: list, sample: int) -> float:
    """Seconds per file of the naive loop over the first `sample` readers (each returns bytes)."""
    rng = np.random.default_rng(0)
    pick = rng.choice(len(read_all), size=min(sample, len(read_all)), replace=False)
    t = time.process_time()  # one process: its CPU time is its idle-machine wall time
    for i in pick:
        naive_preprocess(read_all[i]())
    return (time.process_time() - t) / len(pick)


def bench_chars74k(folder: Path, sample: int) -> dict:
    from ..data import load_source
    from ..data.sources import n_workers

    train, test = folder / "trainPart1.zip", folder / "testPart1.zip"
    if not train.exists() or not test.exists():
        return {"chars74k": f"skipped: {train} or {test} not found"}
    cpu: dict = {}
    with _fresh_cache():
        (a, b), first = _timed(lambda: (load_source(str(train)), load_source(str(train), split="test")), cpu)
        _, cached = _timed(lambda: (load_source(str(train)), load_source(str(train), split="test")))
    n = len(a) + len(b)
    readers = []
    for z in (train, test):
        zf = zipfile.ZipFile(z)
        readers += [lambda zf=zf, name=name: zf.read(name) for name in zf.namelist() if name.endswith(".png")]
    rate = _naive_rate(readers, sample)
    return {"chars74k_images": n, "chars74k_first_s": round(first, 2), "chars74k_cached_s": round(cached, 3),
            "chars74k_first_cpu_s": round(cpu["s"], 1),
            "chars74k_first_idle_estimate_s": round(cpu["s"] / n_workers(), 1),
            "chars74k_naive_single_process_cpu_s_extrapolated": round(rate * len(readers), 1),
            "chars74k_naive_sample_files": min(sample, len(readers)),
            "chars74k_speedup_vs_naive_idle_estimate": round(rate * len(readers) / (cpu["s"] / n_workers()), 2)}


def _font_renderer():
    try:
        font = ImageFont.load_default(size=30)
    except TypeError:  # Pillow without FreeType: the small bitmap font
        font = ImageFont.load_default()
    chars = string.digits + string.ascii_uppercase + string.ascii_lowercase

    def render(i: int, rng: np.random.Generator) -> tuple[str, Image.Image]:
        ch = chars[i % len(chars)]
        img = Image.new("L", (48, 48), int(rng.integers(200, 256)))
        ImageDraw.Draw(img).text((int(rng.integers(6, 16)), int(rng.integers(2, 10))), ch, fill=int(rng.integers(0, 60)),
                                 font=font)
        return ch, img.rotate(float(rng.uniform(-12, 12)), fillcolor=255)
    return render


def generate_jpeg_folder(root: Path, n: int) -> str:
    """n small dark-on-light JPEGs in class folders; returns how they were made."""
    from ..data import SOURCES, load_source
    from ..config import DataConfig

    rng = np.random.default_rng(0)
    if "synthetic" in SOURCES:
        per_class = -(-n // 62)
        ds = load_source(f"synthetic:classes=62,n={per_class}", DataConfig(image_size=48))
        imgs, labels = ds.images[:n, 0].numpy(), ds.labels[:n].numpy()
        items = ((ds.classes[labels[i]], Image.fromarray(255 - imgs[i])) for i in range(len(labels)))
        how = "synthetic source, 48×48, inverted to dark-on-light"
    else:
        render = _font_renderer()
        items = (render(i, rng) for i in range(n))
        how = "Pillow font renderer (synthetic source not registered), 48×48 dark-on-light"
    for i, (ch, img) in enumerate(items):
        d = root / ch
        d.mkdir(exist_ok=True)
        img.save(d / f"{i:06d}.jpg", quality=90)
    return how


def bench_jpeg_folder(n: int, sample: int, workdir: str | None) -> dict:
    from ..data import load_source
    from ..data.sources import n_workers

    root = Path(tempfile.mkdtemp(prefix="charlab-bench-jpegs-", dir=workdir))
    try:
        how, gen = _timed(lambda: generate_jpeg_folder(root, n))
        cpu: dict = {}
        with _fresh_cache():
            ds, first = _timed(lambda: load_source(str(root)), cpu)
            _, cached = _timed(lambda: load_source(str(root)))
        files = sorted(root.rglob("*.jpg"))
        rate = _naive_rate([lambda p=p: p.read_bytes() for p in files], sample * 4)
        return {"jpeg_images": len(ds), "jpeg_generated_by": how, "jpeg_generation_s_untimed": round(gen, 1),
                "jpeg_first_s": round(first, 2), "jpeg_cached_s": round(cached, 3),
                "jpeg_first_cpu_s": round(cpu["s"], 1), "jpeg_first_idle_estimate_s": round(cpu["s"] / n_workers(), 1),
                "jpeg_naive_single_process_cpu_s_extrapolated": round(rate * len(files), 1),
                "jpeg_naive_sample_files": min(sample * 4, len(files)),
                "jpeg_speedup_vs_naive_idle_estimate": round(rate * len(files) / (cpu["s"] / n_workers()), 2)}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace) -> dict:
    import torch  # noqa: F401 - charlab.data imports torch on first use; a first load should not time the import

    from ..data.sources import n_workers

    out = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible, {n_workers()} decode workers",
           "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}
    out.update(bench_chars74k(Path(args.chars74k), args.naive_sample))
    if args.jpegs > 0:
        out.update(bench_jpeg_folder(args.jpegs, args.naive_sample, args.workdir))
    out["targets"] = "Chars74K first <= 15 s, cached <= 0.5 s; 60k JPEGs first <= 60 s, cached <= 1 s (2 cores)"
    return out
