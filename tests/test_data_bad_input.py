"""Data bad input: size caps on idx .gz files and zips, the pixel check and EXIF orientation on every
image path, an empty source, a test source that is the training source, and the CLI's answer to
each: one clear line on stderr, a non-zero exit, and no file touched outside the command's output."""
from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from charlab.__main__ import main
from charlab.config import DataConfig
from charlab.data import load_source, open_image, read_idx
from charlab.errors import CharlabError, DataError
from test_data_sources import _isolated, bars, bomb_png, glyph_img, make_zip, png_bytes, write_idx, write_tree  # noqa: F401


def snapshot(root: Path) -> dict:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def cli_fails(argv: list[str], capsys, watched: Path, match: str) -> str:
    """Run the CLI: non-zero exit, one line on stderr containing `match`, nothing under `watched` changed."""
    before = snapshot(watched)
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc != 0, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and match in lines[0] and "Traceback" not in err, err
    assert snapshot(watched) == before
    return lines[0]


def mnist_dir(root: Path, images_gz: bytes | None = None) -> Path:
    write_idx(root / "train-images-idx3-ubyte", bars(4, True), gz=True)
    write_idx(root / "train-labels-idx1-ubyte", np.array([1, 3, 1, 4], np.uint8), gz=False)
    if images_gz is not None:
        (root / "train-images-idx3-ubyte.gz").write_bytes(images_gz)
    return root


# --------------------------------------------------------------------------------------------- idx .gz


def test_gz_bomb_stops_at_the_decompressed_size_cap(tmp_path, monkeypatch, capsys):
    # 4 MB of zeros behind a valid idx header compress to a few KB: over a 1 MB cap it must stop
    header = bytes([0, 0, 8, 3]) + (1000).to_bytes(4, "big") + (64).to_bytes(4, "big") + (64).to_bytes(4, "big")
    bomb = gzip.compress(header + bytes(1000 * 64 * 64))
    root = mnist_dir(tmp_path / "mnist", bomb)
    assert len(bomb) < 20_000
    monkeypatch.setenv("CHARLAB_MAX_IDX_BYTES", str(1 << 20))
    with pytest.raises(DataError, match="decompresses to more than .* idx size limit"):
        read_idx(root / "train-images-idx3-ubyte.gz")
    line = cli_fails(["data", "info", "--source", f"mnist:{root}", "--no-splits"], capsys, root, "idx size limit")
    assert "CHARLAB_MAX_IDX_BYTES" in line
    monkeypatch.delenv("CHARLAB_MAX_IDX_BYTES")
    assert read_idx(root / "train-images-idx3-ubyte.gz").shape == (1000, 64, 64)  # under the default cap it reads


@pytest.mark.parametrize("damage", ["garbage", "truncated", "bad_crc"])
def test_corrupt_gz_is_one_clear_line(tmp_path, damage, capsys):
    good = gzip.compress(bytes([0, 0, 8, 3]) + (4).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
                         + bars(4, True).tobytes())
    data = {"garbage": b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4,  # a gzip header over a broken deflate stream
            "truncated": good[: len(good) // 2],
            "bad_crc": good[:-8] + bytes(8)}[damage]
    root = mnist_dir(tmp_path / "mnist", data)
    with pytest.raises(DataError, match="corrupt or truncated gzip file"):
        load_source(f"mnist:{root}")
    cli_fails(["data", "info", "--source", f"mnist:{root}"], capsys, root, "corrupt or truncated gzip file")


# --------------------------------------------------------------------------------------------- zips


def test_zip_entry_count_cap(tmp_path, monkeypatch, capsys):
    z = make_zip(tmp_path / "many.zip", {f"A/{i}.png": b"x" for i in range(30)})
    monkeypatch.setenv("CHARLAB_MAX_ZIP_ENTRIES", "20")
    with pytest.raises(DataError, match="holds 30 entries, over the 20 limit"):
        load_source(str(z))
    cli_fails(["data", "info", "--source", str(z)], capsys, tmp_path, "over the 20 limit")
    monkeypatch.setenv("CHARLAB_MAX_ZIP_ENTRIES", "lots")
    cli_fails(["data", "info", "--source", str(z)], capsys, tmp_path, "CHARLAB_MAX_ZIP_ENTRIES must be a number")


# --------------------------------------------------------------------------------------------- images


def test_open_image_has_the_pixel_check(tmp_path):
    # 7000×7000 = 49 M pixels: over charlab's 40 M limit, under Pillow's own error threshold (2 × 40 M)
    for w, h in ((7000, 7000), (100_000, 100_000)):
        p = tmp_path / f"bomb{w}.png"
        p.write_bytes(bomb_png(w, h))
        with pytest.raises(DataError, match="decompression bomb"):
            open_image(str(p))
        z = make_zip(tmp_path / f"b{w}.zip", {"A/x.png": bomb_png(w, h)})
        with pytest.raises(DataError, match="decompression bomb"):
            open_image(f"{z}!/A/x.png")
    (tmp_path / "fine.png").write_bytes(png_bytes(glyph_img(1)))
    assert open_image(str(tmp_path / "fine.png")).size == (60, 80)


def test_predict_refuses_a_bomb_in_one_line(tmp_path, capsys):
    from app_fixtures import make_checkpoint

    user = tmp_path / "user"  # the user's files; charlab's own cache (tmp_path/cache) may fill
    ckpt = make_checkpoint(user / "ck" / "m.pt")
    (user / "bomb.png").write_bytes(bomb_png(7000, 7000))
    before = snapshot(user)
    rc = main(["predict", "--run", str(ckpt), str(user / "bomb.png"), "--json"])
    out = capsys.readouterr()
    assert rc != 0 and "decompression bomb" in out.out + out.err and "Traceback" not in out.err
    assert snapshot(user) == before


def _exif_rotated(img: Image.Image, fmt: str) -> bytes:
    """`img` stored turned on its side, with the EXIF orientation (6: rotate 90° clockwise to view)
    that a phone writes instead of rotating the pixels."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.transpose(Image.Transpose.ROTATE_90).save(buf, format=fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def test_exif_rotated_png_and_jpeg_read_as_the_upright_image(tmp_path):
    up = glyph_img(3, size=(40, 90))  # tall and asymmetric: a rotation shows
    root = tmp_path / "chars"
    (root / "A").mkdir(parents=True)
    (root / "A" / "0up.png").write_bytes(png_bytes(up))
    (root / "A" / "1rot.png").write_bytes(_exif_rotated(up, "PNG"))
    (root / "A" / "2rot.jpg").write_bytes(_exif_rotated(up, "JPEG"))
    (root / "A" / "3up.jpg").write_bytes(png_bytes(up, "JPEG"))
    for name in ("1rot.png", "2rot.jpg"):
        assert open_image(str(root / "A" / name)).size == up.size  # upright: 40 wide, 90 high
    ds = load_source(str(root), DataConfig())
    names = [Path(p).name for p in ds.paths]
    img = {n: ds.images[i, 0].numpy().astype(int) for i, n in enumerate(names)}
    assert np.array_equal(img["0up.png"], img["1rot.png"])
    assert np.abs(img["2rot.jpg"] - img["3up.jpg"]).mean() < 3  # JPEG: the same up to compression
    sideways = load_source(str(root), DataConfig(image_size=32))  # and not the sideways pixels
    assert np.array_equal(sideways.images[0], sideways.images[1])


# --------------------------------------------------------------------------------------------- sources


@pytest.mark.parametrize("text", ["", "  "])
def test_empty_source_is_refused(tmp_path, text, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty path once read the current folder as a dataset
    write_tree(tmp_path / "A_folder_here")
    cli_fails(["data", "info", "--source", text], capsys, tmp_path, "no data source given")
    with pytest.raises(DataError, match="no data source given"):
        load_source(text)


def test_test_source_equal_to_the_training_source_is_a_leak(tmp_path, capsys):
    root = tmp_path / "chars"
    write_tree(root, per_class=3)
    for test in (str(root), str(root) + "/", str(tmp_path / "." / "chars")):
        line = cli_fails(["data", "info", "--source", str(root), "--test-source", test], capsys, tmp_path,
                         "is the training source itself")
        assert "leak" in line
    cli_fails(["data", "info", "--source", "synthetic:classes=digits,n=4", "--test-source",
               "synthetic:classes=digits,n=4"], capsys, tmp_path, "train/test leak")
    other = tmp_path / "other"
    write_tree(other, per_class=2)
    assert main(["data", "info", "--source", str(root), "--test-source", str(other), "--json"]) == 0
    capsys.readouterr()


def test_train_refuses_a_missing_source_before_making_a_run_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CHARLAB_RUNS", str(tmp_path / "runs"))
    (tmp_path / "runs").mkdir()
    cli_fails(["train", "--source", str(tmp_path / "nope"), "--epochs", "1"], capsys, tmp_path, "data source not found")
    cli_fails(["train", "--source", "", "--epochs", "1"], capsys, tmp_path, "no data source given")
    assert list((tmp_path / "runs").iterdir()) == []


def test_check_source_is_cheap_and_clear(tmp_path, monkeypatch):
    from charlab.data.sources import check_source

    monkeypatch.setenv("CHARLAB_OFFLINE", "1")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    (tmp_path / "t.csv").write_text("a,b,c\n")
    cases = {str(tmp_path / "nowhere"): "not found", str(tmp_path / "bad.zip"): "not a readable zip",
             str(tmp_path / "t.csv"): "columns", f"mnist:{tmp_path}": "MNIST files not found",
             "synthetic:classes=7": "classes must be one of", "digitsum:from=" + str(tmp_path / "x"): "not found",
             "": "no data source given"}
    for text, msg in cases.items():
        with pytest.raises(CharlabError, match=msg):
            check_source(text)
    check_source("synthetic:classes=digits")
    write_tree(tmp_path / "ok")
    check_source(str(tmp_path / "ok"), "synthetic:classes=digits")
    with pytest.raises(DataError, match="leak"):
        check_source(str(tmp_path / "ok"), str(tmp_path / "ok"))


# --------------------------------------------------------------------------------------------- the app

from test_app_pages import lab, navigation_v2, ok, open_app  # noqa: E402,F401 - the app fixtures


def test_dataset_page_counts_what_decodes(lab, tmp_path):
    root = tmp_path / "chars"
    write_tree(root, classes=("A", "B", "C"), per_class=8)  # 24 images
    for name in ("A/img0.png", "A/img1.png", "B/img2.png", "C/img7.png"):
        (root / name).write_bytes(b"\x89PNG\r\n\x1a\n not really")  # 4 that do not decode
    at = open_app(lab, "dataset", sb_kind="path", sb_path_path=str(root))
    ok(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "20" and metrics["Skipped files"] == "4"
    assert metrics["Median per class"] == "7" and metrics["Train"] and metrics["Validation"]
    shown = at.dataframe[-1].value
    assert sorted(Path(p).name for p in shown["file"]) == ["img0.png", "img1.png", "img2.png", "img7.png"]


def test_train_page_refuses_a_missing_source_before_launching(lab, monkeypatch):
    import charlab.runs as runs

    launched = []
    monkeypatch.setattr(runs, "launch", lambda config, root="runs", **kw: launched.append(config))
    missing = lab.home / "no such folder"
    at = open_app(lab, "train", sb_kind="path", sb_path_path=str(missing))
    ok(at)
    at.form_submit_button[0].click().run()
    ok(at)
    assert launched == []
    assert any("not found" in e.value and str(missing) in e.value for e in at.error)
