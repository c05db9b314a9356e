"""Sources built in tmp_path: folder, zip, CSV, MNIST/EMNIST idx, and every bad-input case."""
from __future__ import annotations

import gzip
import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from charlab.__main__ import main
from charlab.config import DataConfig
from charlab.data import load_source, load_splits, open_image, source_counts
from charlab.errors import DataError


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CHARLAB_OFFLINE", "1")  # tests never touch the network
    monkeypatch.setenv("CHARLAB_WORKERS", "1")


def glyph_img(k: int, mode: str = "L", size=(60, 80)) -> Image.Image:
    """Dark strokes on white, varying with k, in the Pillow mode asked for."""
    img = Image.new("L", size, 255)
    d = ImageDraw.Draw(img)
    d.line([(15 + k % 7, 10), (30, 70 - k % 5), (45, 15 + k % 9)], fill=0, width=6)
    if mode == "I;16":
        return Image.fromarray(np.asarray(img).astype(np.uint16) * 257)
    if mode == "P":
        return img.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    if mode == "RGBA_transparent":
        rgba = Image.new("RGBA", size, (0, 0, 0, 0))
        rgba.putalpha(Image.eval(img, lambda v: 255 - v))
        return rgba
    return img.convert(mode)


def png_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny valid-looking PNG whose header claims 10 G pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def write_tree(root: Path, classes=("A", "B", "7"), per_class: int = 3, modes=("L",)) -> None:
    for ci, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            mode = modes[(ci + k) % len(modes)]
            fmt = "JPEG" if mode == "CMYK" else "PNG"
            (root / name / f"img{k}.{fmt.lower()}").write_bytes(png_bytes(glyph_img(ci * 10 + k, mode), fmt))


def reasons(ds_or_skipped) -> set[str]:
    skipped = ds_or_skipped.skipped if hasattr(ds_or_skipped, "skipped") else ds_or_skipped
    return {s["reason"].split(":")[0].split(" (")[0] for s in skipped}


# --------------------------------------------------------------------------------------------- folders


def test_folder_source_all_modes_and_bad_files(tmp_path):
    root = tmp_path / "chars"
    write_tree(root, modes=("L", "I;16", "P", "RGBA_transparent", "CMYK", "RGB", "1"), per_class=4)
    (root / "A" / "notes.txt").write_text("not an image")
    (root / "A" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "B" / "bomb.png").write_bytes(bomb_png())
    (root / "B" / ".DS_Store").write_bytes(b"\0\0")
    (root / "empty").mkdir()
    (root / "loose.png").write_bytes(png_bytes(glyph_img(1)))
    ds = load_source(str(root), DataConfig())
    assert ds.classes == ["7", "A", "B"]  # characters in 0-9, A-Z order
    assert ds.counts().tolist() == [4, 4, 4]  # 16-bit, palette, RGBA, CMYK, 1-bit all loaded, none skipped
    assert ds.images.shape == (12, 1, 28, 28) and ds.images.dtype.is_floating_point is False
    assert all(img.max() == 255 for img in ds.images)  # every mode produced a visible glyph
    by_path = {Path(s["path"]).name: s["reason"] for s in ds.skipped}
    assert by_path["notes.txt"] == "not an image file"
    assert by_path["broken.png"].startswith("cannot decode image")
    assert "decompression bomb" in by_path["bomb.png"]
    assert by_path["empty"] == "empty class folder"
    assert by_path["loose.png"] == "not inside a class folder"
    assert by_path[".DS_Store"].startswith("hidden")
    assert load_source(str(root), DataConfig(), split="test") is None  # no test split of its own
    classes, counts, skipped = source_counts(str(root))
    assert classes == ["7", "A", "B"] and counts.tolist() == [4, 5, 5]  # listing counts files, decodes nothing
    assert "empty class folder" in reasons(skipped)


def test_folder_with_train_and_test_subfolders_and_chars74k_names(tmp_path):
    root = tmp_path / "data"
    write_tree(root / "train", classes=("Sample001", "Sample011", "Sample037"), per_class=3)
    write_tree(root / "test", classes=("Sample001", "Sample011"), per_class=2)
    ds = load_source(str(root))
    assert ds.classes == ["0", "A", "a"] and len(ds) == 9
    test = load_source(str(root), split="test")
    assert test.classes == ["0", "A"] and len(test) == 4
    sp = load_splits(DataConfig(source=str(root), val_fraction=0.34))
    assert sp.test.classes == sp.train.classes == ["0", "A", "a"]  # test mapped onto train's class list
    assert sorted(sp.test.labels.tolist()) == [0, 0, 1, 1]
    assert len(sp.train) + len(sp.val) == 9 and len(sp.val) == 3


def test_sibling_test_folder(tmp_path):
    write_tree(tmp_path / "train", per_class=2)
    write_tree(tmp_path / "test", per_class=1)
    test = load_source(str(tmp_path / "train"), split="test")
    assert test is not None and len(test) == 3 and Path(test.source).name == "test"


def test_test_with_unknown_classes_is_a_clear_error(tmp_path):
    write_tree(tmp_path / "train", classes=("A", "B"), per_class=2)
    write_tree(tmp_path / "test", classes=("A", "Z"), per_class=1)
    with pytest.raises(DataError, match="'Z'"):
        load_splits(DataConfig(source=str(tmp_path / "train")))


def test_missing_path_and_junk_only_sources(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        load_source(str(tmp_path / "nowhere"))
    junk = tmp_path / "junk"
    (junk / "A").mkdir(parents=True)
    (junk / "A" / "x.png").write_bytes(b"not a png")
    (junk / "A" / "y.txt").write_text("hello")
    with pytest.raises(DataError, match=str(junk)) as e:
        load_source(str(junk))
    assert "cannot decode image" in str(e.value)
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(DataError, match="not a folder, a .zip or a .csv"):
        load_source(str(tmp_path / "file.bin"))


def test_process_pool_gives_the_same_result_as_one_process(tmp_path, monkeypatch):
    root = tmp_path / "many"
    write_tree(root, classes=("A", "B"), per_class=150)  # 300 images: enough to use the pool
    (root / "A" / "broken.png").write_bytes(b"junk")
    serial = load_source(str(root))
    monkeypatch.setenv("CHARLAB_WORKERS", "2")
    monkeypatch.setenv("CHARLAB_CACHE_DIR", str(tmp_path / "cache2"))
    calls = []
    pooled = load_source(str(root), progress=lambda d, t, m: calls.append((d, t)))
    assert not pooled.info.get("cached")
    assert np.array_equal(serial.images.numpy(), pooled.images.numpy())
    assert serial.labels.tolist() == pooled.labels.tolist() and serial.paths == pooled.paths
    assert serial.skipped == pooled.skipped and len(pooled.skipped) == 1
    assert calls[-1] == (301, 301)


# --------------------------------------------------------------------------------------------- zips


def make_zip(path: Path, entries: dict[str, bytes], dirs=()) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for d in dirs:
            zf.writestr(zipfile.ZipInfo(d.rstrip("/") + "/"), b"")
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def test_zip_with_wrapper_folder_unsafe_entries_and_sibling_test(tmp_path):
    entries = {f"train/Sample{c:03d}/img{k}.png": png_bytes(glyph_img(c + k)) for c in (2, 12, 40) for k in range(3)}
    entries["train/Sample002/broken.png"] = b"\x89PNG broken"
    entries["../evil.png"] = png_bytes(glyph_img(0))
    entries["/etc/abs.png"] = png_bytes(glyph_img(0))
    entries["train/readme.md"] = b"# hi"
    make_zip(tmp_path / "trainPart9.zip", entries, dirs=["train/", "train/Sample005/"])
    make_zip(tmp_path / "testPart9.zip", {f"test/Sample{c:03d}/t.png": png_bytes(glyph_img(c)) for c in (2, 12, 40)})
    ds = load_source(str(tmp_path / "trainPart9.zip"))
    assert ds.classes == ["1", "B", "d"] and ds.counts().tolist() == [3, 3, 3]
    r = {s["path"].split("!/")[-1]: s["reason"] for s in ds.skipped}
    assert "unsafe path" in r["../evil.png"] and "unsafe path" in r["/etc/abs.png"]
    assert r["train/Sample005"] == "empty class folder"
    assert r["train/Sample002/broken.png"].startswith("cannot decode image")
    assert r["train/readme.md"] == "not an image file"
    assert ds.paths[0].startswith(str((tmp_path / "trainPart9.zip").resolve()) + "!/train/")
    assert open_image(ds.paths[0]).size == (60, 80)
    test = load_source(str(tmp_path / "trainPart9.zip"), split="test")
    assert test.classes == ["1", "B", "d"] and len(test) == 3
    assert Path(test.source).name == "testPart9.zip"
    # the test zip on its own is a whole source, with no test split of its own
    assert len(load_source(str(tmp_path / "testPart9.zip"))) == 3
    assert load_source(str(tmp_path / "testPart9.zip"), split="test") is None


def test_zip_with_train_and_test_inside(tmp_path):
    entries = {f"ds/{part}/{c}/{k}.png": png_bytes(glyph_img(k)) for part in ("train", "test") for c in "xy"
               for k in range(2 if part == "test" else 4)}
    z = make_zip(tmp_path / "both.zip", entries)
    assert len(load_source(str(z))) == 8 and len(load_source(str(z), split="test")) == 4
    assert source_counts(str(z), split="test")[1].tolist() == [2, 2]


def test_zip_bomb_by_declared_size_and_bad_zip(tmp_path, monkeypatch):
    z = make_zip(tmp_path / "big.zip", {f"A/{k}.png": png_bytes(glyph_img(k)) for k in range(3)})
    monkeypatch.setenv("CHARLAB_MAX_ZIP_BYTES", "100")
    with pytest.raises(DataError, match="over the .* limit"):
        load_source(str(z))
    monkeypatch.delenv("CHARLAB_MAX_ZIP_BYTES")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(DataError, match="not a readable zip"):
        load_source(str(bad))


def test_decompression_bomb_in_zip_is_skipped(tmp_path):
    entries = {"A/ok.png": png_bytes(glyph_img(1)), "A/bomb.png": bomb_png(), "B/ok.png": png_bytes(glyph_img(2))}
    ds = load_source(str(make_zip(tmp_path / "b.zip", entries)))
    assert len(ds) == 2
    (skip,) = ds.skipped
    assert skip["path"].endswith("A/bomb.png") and "decompression bomb" in skip["reason"]


# --------------------------------------------------------------------------------------------- csv


def csv_rows(labels, side=28, seed=0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    rows = []
    for lab in labels:
        img = np.zeros((side, side), np.uint8)
        y, x = rng.integers(4, side - 12, size=2)
        img[y:y + 8, x:x + 3] = 255  # a short bright bar, white on black as in the Kaggle files
        rows.append([lab] + img.ravel().tolist())
    return rows


def write_csv(path: Path, rows, header: bool) -> Path:
    lines = []
    if header:
        lines.append(",".join(["label"] + [f"pixel{i}" for i in range(len(rows[0]) - 1)]))
    lines += [",".join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("header", [False, True])
def test_csv_kaggle_layout(tmp_path, header):
    labels = [0, 1, 25, 25, 3, 1]  # A-Z letters as 0..25
    p = write_csv(tmp_path / "az_train.csv", csv_rows(labels), header)
    ds = load_source(str(p))
    assert ds.classes == ["A", "B", "D", "Z"] and ds.counts().tolist() == [1, 2, 1, 2]
    assert ds.images.shape == (6, 1, 28, 28)
    assert source_counts(str(p))[1].tolist() == [1, 2, 1, 2]
    assert load_source(str(p), split="test") is None
    write_csv(tmp_path / "az_test.csv", csv_rows([1, 3]), header)
    assert load_source(str(p), split="test").classes == ["B", "D"]


def test_csv_bad_rows_and_unlabelled_files(tmp_path):
    rows = csv_rows([1, 2, 3])
    rows[1][100] = ""  # a missing pixel
    p = write_csv(tmp_path / "digits.csv", rows, header=False)
    ds = load_source(str(p))
    assert ds.classes == ["1", "3"] and ds.skipped == [{"path": f"{p}#line2", "reason": "missing values"}]
    unlabelled = write_csv(tmp_path / "test.csv", [r[1:] for r in csv_rows([0, 1])], header=True)
    with pytest.raises(DataError, match="no label column"):
        load_source(str(unlabelled))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        load_source(str(tmp_path / "empty.csv"))


# --------------------------------------------------------------------------------------------- idx


def write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def bars(n: int, horizontal: bool) -> np.ndarray:
    """n 28×28 images of a bar (not centred, not symmetric) so a transposition shows."""
    imgs = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        if horizontal:
            imgs[i, 4:8, 3:25] = 255
        else:
            imgs[i, 3:25, 4:8] = 255
    return imgs


def test_mnist_idx_raw_and_gz(tmp_path):
    root = tmp_path / "mnist"
    write_idx(root / "MNIST" / "raw" / "train-images-idx3-ubyte", bars(5, True), gz=True)
    write_idx(root / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.array([3, 1, 4, 1, 5]), gz=True)
    write_idx(root / "t10k-images-idx3-ubyte", bars(2, True), gz=False)
    write_idx(root / "t10k-labels-idx1-ubyte", np.array([9, 0]), gz=False)
    cfg = DataConfig(crop=False)  # geometry untouched: 28×28 in, 28×28 out
    ds = load_source(f"mnist:{root}", cfg)
    assert ds.classes == list("0123456789") and ds.labels.tolist() == [3, 1, 4, 1, 5]
    assert np.array_equal(ds.images[0, 0].numpy(), bars(1, True)[0])
    test = load_source(f"mnist:{root}", cfg, split="test")
    assert test.labels.tolist() == [9, 0]
    assert source_counts(f"mnist:{root}")[1].tolist() == [0, 2, 0, 1, 1, 1, 0, 0, 0, 0]


def test_emnist_transposed_and_letters_mapping(tmp_path):
    root = tmp_path / "em"
    stored = bars(3, True).transpose(0, 2, 1)  # EMNIST stores the transpose of what was written
    write_idx(root / "emnist-letters-train-images-idx3-ubyte", stored, gz=True)
    write_idx(root / "emnist-letters-train-labels-idx1-ubyte", np.array([1, 26, 2]), gz=True)
    ds = load_source(f"emnist:{root}:letters", DataConfig(crop=False))
    assert ds.classes == [chr(c) for c in range(65, 91)]
    assert [ds.classes[i] for i in ds.labels.tolist()] == ["A", "Z", "B"]
    assert np.array_equal(ds.images[0, 0].numpy(), bars(1, True)[0])  # upright again
    write_idx(root / "emnist-balanced-train-images-idx3-ubyte", stored, gz=False)
    write_idx(root / "emnist-balanced-train-labels-idx1-ubyte", np.array([0, 36, 46]), gz=False)
    bal = load_source(f"emnist:{root}", DataConfig(crop=False))  # balanced is the default split
    assert len(bal.classes) == 47 and [bal.classes[i] for i in bal.labels.tolist()] == ["0", "a", "t"]


def test_idx_missing_or_corrupt_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=f"looked for train-images-idx3-ubyte.*{tmp_path}"):
        load_source(f"mnist:{tmp_path}")
    with pytest.raises(DataError, match="unknown EMNIST split"):
        load_source(f"emnist:{tmp_path}:nosuch")
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x09\x03junk")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 9, 1]))
    with pytest.raises(DataError, match="bad magic"):
        load_source(f"mnist:{tmp_path}")
    write_idx(tmp_path / "train-images-idx3-ubyte", bars(2, True), gz=False)
    with pytest.raises(DataError, match="truncated"):
        load_source(f"mnist:{tmp_path}")


# --------------------------------------------------------------------------------------------- cli


def test_cli_data_info_json_and_errors(tmp_path, capsys):
    import json

    root = tmp_path / "chars"
    write_tree(root, per_class=2)
    (root / "A" / "bad.png").write_bytes(b"nope")
    assert main(["data", "info", "--source", str(root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["classes"] == ["7", "A", "B"] and out["counts"] == [2, 2, 2] and out["n_images"] == 6
    assert out["skipped"][0]["path"].endswith("bad.png") and out["imbalance_ratio"] == 1.0
    assert out["splits"] == {"train": 3, "val": 3, "test": None}
    assert main(["data", "info", "--source", str(root)]) == 0
    text = capsys.readouterr().out
    assert "3 classes" in text and "skipped 1 files" in text
    assert main(["data", "info", "--source", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    png = tmp_path / "grid.png"
    assert main(["data", "grid", "--source", str(root), "--out", str(png), "--per-class", "2", "--scale", "1"]) == 0
    assert Image.open(png).size == (2 * 30 + 2, 3 * 30 + 2)


def test_cli_info_on_the_synthetic_source_needs_no_files(capsys):
    import json

    assert main(["data", "info", "--source", "synthetic:classes=digits,n=6,test_n=2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["classes"] == list("0123456789") and out["counts"] == [6] * 10 and out["skipped"] == []
    assert out["splits"] == {"train": 50, "val": 10, "test": 20}
