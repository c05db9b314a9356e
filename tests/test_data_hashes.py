"""Per-image content hashes (CharDataset.hashes) and source-relative names (source_paths)."""
from __future__ import annotations

import hashlib

import numpy as np

from charlab.config import DataConfig
from charlab.data import align_classes, load_source
from charlab.data.dataset import HASH_CHARS, content_hash
from test_data_sources import _isolated, csv_rows, glyph_img, make_zip, png_bytes, write_csv, write_idx  # noqa: F401


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:HASH_CHARS]


def _files(tmp_path):
    files = {f"{c}/img{k}.png": png_bytes(glyph_img(ci * 10 + k)) for ci, c in enumerate("AB") for k in range(3)}
    files["B/copy.png"] = files["A/img0.png"]  # an exact duplicate under another class
    return files


def test_folder_hashes_are_the_files_bytes_whatever_the_image_size(tmp_path):
    files = _files(tmp_path)
    root = tmp_path / "chars"
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    ds28 = load_source(str(root), DataConfig(image_size=28))
    ds20 = load_source(str(root), DataConfig(image_size=20, margin=0.2))
    assert HASH_CHARS == 16 and all(len(h) == 16 for h in ds28.hashes)
    names = ds28.source_paths()
    assert sorted(names) == sorted(files)  # folder-relative, '/'-separated
    assert ds28.paths[0].startswith(str(root.resolve()))  # paths stay absolute for existing users
    assert [ds28.hashes[i] for i in range(len(ds28))] == [sha(files[n]) for n in names]
    assert ds20.hashes == ds28.hashes and ds20.source_paths() == names
    by_name = dict(zip(names, ds28.hashes))
    assert by_name["B/copy.png"] == by_name["A/img0.png"] != by_name["A/img1.png"]


def test_zip_hashes_names_and_the_cache_keeps_them(tmp_path):
    files = _files(tmp_path)
    z = make_zip(tmp_path / "chars.zip", {f"wrap/{k}": v for k, v in files.items()})
    first = load_source(str(z))
    again = load_source(str(z))
    assert not first.info.get("cached") and again.info.get("cached")
    assert first.source_paths() == again.source_paths()
    assert sorted(first.source_paths()) == sorted(f"wrap/{k}" for k in files)  # the zip entry names
    assert again.hashes == first.hashes == [sha(files[n[len("wrap/"):]]) for n in first.source_paths()]
    assert again.source_path(0) == first.source_paths()[0]


def test_hashes_follow_subset_select_and_align(tmp_path):
    files = _files(tmp_path)
    z = make_zip(tmp_path / "chars.zip", files)
    ds = load_source(str(z))
    sub = ds.subset([3, 0])
    assert sub.hashes == [ds.hashes[3], ds.hashes[0]] and sub.source_paths() == [ds.source_path(3), ds.source_path(0)]
    only_b = ds.select_classes(["B"])
    assert only_b.hashes == [h for h, lab in zip(ds.hashes, ds.labels.tolist()) if ds.classes[lab] == "B"]
    aligned = align_classes(ds.select_classes(["B"]), ["A", "B", "C"])
    assert aligned.hashes == only_b.hashes


def test_csv_and_idx_hashes_are_of_the_raw_pixels(tmp_path):
    rows = csv_rows([0, 1, 2, 1])
    rows.append(list(rows[1]))  # a duplicate row
    ds = load_source(str(write_csv(tmp_path / "train.csv", rows, header=False)))
    raw = [np.asarray(r[1:], np.uint8).tobytes() for r in rows]
    assert ds.hashes == [sha(b) for b in raw]
    assert ds.hashes[1] == ds.hashes[4] != ds.hashes[3]
    assert ds.source_paths()[0] == "#line1"

    images = np.random.default_rng(0).integers(0, 255, (6, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "mn" / "train-images-idx3-ubyte", images, gz=True)
    write_idx(tmp_path / "mn" / "train-labels-idx1-ubyte", np.arange(6, dtype=np.uint8), gz=False)
    mn = load_source(f"mnist:{tmp_path / 'mn'}", DataConfig(image_size=16))
    assert mn.hashes == [sha(a.tobytes()) for a in images]
    assert mn.source_paths()[2] == "train-images-idx3-ubyte.gz#2"


def test_synthetic_hashes_do_not_depend_on_the_image_size():
    a = load_source("synthetic:classes=digits,n=3", DataConfig(image_size=28))
    b = load_source("synthetic:classes=digits,n=3", DataConfig(image_size=24))
    assert len(a.hashes) == len(a) == 30 and a.hashes == b.hashes and len(set(a.hashes)) == 30
    ds = load_source("digitsum:n=5,test_n=2,from=synthetic:classes=digits,n=3", DataConfig())
    assert ds.hashes == [content_hash(ds.images[i].numpy().tobytes()) for i in range(len(ds))]


def test_oversampled_copies_get_their_own_hashes():
    from charlab.balance import oversample

    ds = load_source("synthetic:classes=digits,n=6,profile=longtail", DataConfig())
    out = oversample(ds, target=6)
    assert len(out.hashes) == len(out) and out.hashes[:len(ds)] == ds.hashes
    assert not set(out.hashes[len(ds):]) & set(ds.hashes)


def test_a_cache_entry_without_hashes_is_rebuilt_not_returned(tmp_path):
    import torch

    from charlab.data.cache import CACHE_FORMAT, cache_dir

    files = _files(tmp_path)
    z = make_zip(tmp_path / "chars.zip", files)
    first = load_source(str(z))
    (entry,) = (cache_dir() / "data").glob("*.pt")
    old = torch.load(entry, weights_only=True)
    assert CACHE_FORMAT >= 3 and old["format"] == CACHE_FORMAT
    del old["hashes"]  # what an entry written before hashes existed holds
    torch.save(old, entry)
    again = load_source(str(z))
    assert not again.info.get("cached") and again.hashes == first.hashes
