"""The disk cache: hits, misses on changed content or options, corrupt entries rebuilt."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from charlab.config import DataConfig
from charlab.data import cache_dir, clear_cache, load_source


@pytest.fixture()
def folder(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CHARLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CHARLAB_WORKERS", "1")
    root = tmp_path / "src"
    for c in "AB":
        (root / c).mkdir(parents=True)
        for k in range(3):
            img = Image.new("L", (40, 40), 255)
            ImageDraw.Draw(img).line([(10 + k, 5), (20, 35), (30, 5 + k)], fill=0, width=4)
            img.save(root / c / f"{k}.png")
    return root


def entries() -> list[Path]:
    return sorted((cache_dir() / "data").glob("*.pt"))


def test_second_load_is_cached_and_identical(folder, tmp_path):
    assert cache_dir() == tmp_path / "cache"
    first = load_source(str(folder))
    assert not first.info.get("cached") and len(entries()) == 1
    second = load_source(str(folder))
    assert second.info.get("cached")
    assert np.array_equal(first.images.numpy(), second.images.numpy())
    assert first.labels.tolist() == second.labels.tolist() and first.classes == second.classes
    assert first.paths == second.paths and first.skipped == second.skipped


def test_options_and_file_changes_miss_the_cache(folder):
    load_source(str(folder))
    assert load_source(str(folder), DataConfig(image_size=32)).images.shape[-1] == 32
    assert not load_source(str(folder), DataConfig(margin=0.05)).info.get("cached")
    assert load_source(str(folder), DataConfig(seed=5)).info.get("cached")  # the seed does not change a folder
    assert len(entries()) == 3
    f = folder / "A" / "0.png"
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert not load_source(str(folder)).info.get("cached")
    (folder / "B" / "0.png").unlink()
    assert len(load_source(str(folder))) == 5


def test_corrupt_cache_entry_is_ignored_and_rebuilt(folder):
    first = load_source(str(folder))
    (entry,) = entries()
    entry.write_bytes(entry.read_bytes()[:100])  # a torn write
    again = load_source(str(folder))
    assert not again.info.get("cached") and np.array_equal(first.images.numpy(), again.images.numpy())
    assert load_source(str(folder)).info.get("cached")  # rewritten whole
    entry.write_bytes(b"garbage")
    assert len(load_source(str(folder))) == 6
    assert clear_cache() == 1 and entries() == []
