"""Preprocessing: every Pillow mode, polarity, crop/pad/resize geometry, threshold, robustness."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from charlab.config import DataConfig
from charlab.data import preprocess_image, preprocess_ink
from charlab.data.preprocess import ink_bbox, preprocess_array

CFG = DataConfig()


def center_of_mass(a: np.ndarray) -> tuple[float, float]:
    a = a.astype(np.float64)
    ys, xs = np.mgrid[: a.shape[0], : a.shape[1]]
    return float((ys * a).sum() / a.sum()), float((xs * a).sum() / a.sum())


def glyph(size=(300, 200), ink=0, paper=255, width=14) -> Image.Image:
    """An asymmetric 'L'-like glyph, dark ink on light paper, off-centre in the canvas."""
    img = Image.new("L", size, paper)
    d = ImageDraw.Draw(img)
    d.line([(60, 40), (60, 150), (140, 150)], fill=ink, width=width)
    return img


def mask(a: np.ndarray) -> np.ndarray:
    return a > 127


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (mask(a) & mask(b)).sum() / max((mask(a) | mask(b)).sum(), 1)


REF = preprocess_image(glyph(), CFG)


def test_reference_is_ink_bright_centred_and_square():
    assert REF.shape == (28, 28) and REF.dtype == np.uint8
    assert REF.max() == 255
    assert REF[0].max() == 0 and REF[-1].max() == 0 and REF[:, 0].max() == 0 and REF[:, -1].max() == 0
    cy, cx = center_of_mass(REF)
    # an 'L' has its mass low-left of its box centre; the box itself is centred
    top, bottom, left, right = ink_bbox(REF)
    assert abs((top + bottom) / 2 - 13.5) <= 1 and abs((left + right) / 2 - 13.5) <= 1
    assert cy > 13.5 and cx < 13.5


def _as_mode(mode: str) -> Image.Image:
    g = glyph()
    if mode in ("1", "L", "RGB", "CMYK"):
        return g.convert(mode)
    if mode == "P":
        return g.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    if mode == "RGBA_opaque":
        return g.convert("RGBA")
    if mode == "LA":
        return g.convert("LA")
    if mode == "I;16":
        return Image.fromarray(np.asarray(g).astype(np.uint16) * 257)  # 16-bit, full range
    if mode == "I":
        return Image.fromarray(np.asarray(g).astype(np.int32) * 257)  # as old Pillow opens 16-bit PNGs
    if mode == "F":
        return Image.fromarray(np.asarray(g).astype(np.float32) / 255)
    raise AssertionError(mode)


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "RGBA_opaque", "LA", "CMYK", "I;16", "I", "F"])
def test_every_mode_gives_the_same_glyph(mode):
    img = _as_mode(mode)
    out = preprocess_image(img, CFG)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert iou(out, REF) > 0.85, mode


def test_cmyk_black_ink_and_palette_with_transparency():
    cmyk = Image.new("CMYK", (120, 120), (0, 0, 0, 0))  # white paper
    ImageDraw.Draw(cmyk).rectangle([50, 20, 70, 100], fill=(0, 0, 0, 255))  # black bar
    out = preprocess_image(cmyk, CFG)
    assert out.max() == 255 and out[0, 0] == 0
    p = Image.new("P", (120, 120), 0)
    p.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    ImageDraw.Draw(p).rectangle([50, 20, 70, 100], fill=1)
    p.info["transparency"] = 0  # white is transparent: a drawing on a transparent canvas
    assert iou(preprocess_image(p, CFG), out) > 0.9


def test_transparent_canvas_uses_alpha_as_ink_whatever_the_stroke_colour():
    for colour in ((0, 0, 0, 255), (255, 255, 255, 255), (200, 30, 30, 255)):
        img = Image.new("RGBA", (400, 400), (0, 0, 0, 0))
        ImageDraw.Draw(img).line([(150, 60), (150, 340), (260, 340)], fill=colour, width=24)
        out = preprocess_image(img, CFG)
        assert out.max() == 255 and out[0, 0] == 0, colour
        assert mask(out).sum() > 40


def test_opaque_canvas_white_on_black_and_black_on_white_agree():
    a = Image.new("RGBA", (400, 400), (0, 0, 0, 255))
    ImageDraw.Draw(a).line([(150, 60), (150, 340), (260, 340)], fill=(255, 255, 255, 255), width=24)
    b = Image.new("RGBA", (400, 400), (255, 255, 255, 255))
    ImageDraw.Draw(b).line([(150, 60), (150, 340), (260, 340)], fill=(0, 0, 0, 255), width=24)
    oa, ob = preprocess_image(a, CFG), preprocess_image(b, CFG)
    assert np.abs(oa.astype(int) - ob.astype(int)).max() <= 2


def test_polarity_auto_and_forced():
    dark_on_light = glyph()
    light_on_dark = glyph(ink=255, paper=0)
    assert np.array_equal(preprocess_image(dark_on_light, CFG), preprocess_image(light_on_dark, CFG))
    # forcing "no" on dark-on-light keeps the paper as ink: the whole square lights up
    forced = preprocess_image(dark_on_light, DataConfig(invert="no"))
    assert mask(forced).mean() > 0.25  # the paper (70% × 47% of the square) is now the "ink"
    assert np.array_equal(preprocess_image(light_on_dark, DataConfig(invert="yes")), forced)


def test_grey_paper_and_grey_ink_are_normalised():
    img = glyph(ink=90, paper=200)  # a low-contrast scan
    out = preprocess_image(img, CFG)
    assert out.max() == 255 and out[0, 0] == 0
    assert iou(out, REF) > 0.85


def test_tall_thin_bar_keeps_its_aspect_ratio():
    img = Image.new("L", (300, 300), 0)
    ImageDraw.Draw(img).rectangle([140, 30, 159, 269], fill=255)  # 20 wide × 240 tall
    out = preprocess_image(img, CFG)
    top, bottom, left, right = ink_bbox(out)
    height, width = bottom - top + 1, right - left + 1
    assert height >= 18  # the long side fills the square less the margins (28 × 0.7 ≈ 20)
    assert width <= 4  # 20/240 of ~20 px is under 2 px, plus antialiasing
    cy, cx = center_of_mass(out)
    assert abs(cy - 13.5) < 1 and abs(cx - 13.5) < 1


def test_off_centre_ink_is_centred_and_margin_respected():
    img = Image.new("L", (500, 400), 0)
    ImageDraw.Draw(img).ellipse([20, 20, 120, 120], fill=255)  # a blob in the top-left corner
    for size, margin in ((28, 0.15), (32, 0.1), (64, 0.2)):
        out = preprocess_image(img, DataConfig(image_size=size, margin=margin))
        assert out.shape == (size, size)
        cy, cx = center_of_mass(out)
        assert abs(cy - (size - 1) / 2) < 1 and abs(cx - (size - 1) / 2) < 1
        top, bottom, left, right = ink_bbox(out)
        assert abs((bottom - top + 1) - size * (1 - 2 * margin)) <= 2


def test_crop_off_keeps_the_whole_image():
    img = Image.new("L", (100, 100), 0)
    ImageDraw.Draw(img).rectangle([0, 0, 19, 19], fill=255)  # top-left corner
    out = preprocess_image(img, DataConfig(crop=False))
    cy, cx = center_of_mass(out)
    assert cy < 5 and cx < 5


def test_faint_noise_and_a_speck_do_not_move_the_crop():
    rng = np.random.default_rng(0)
    base = np.asarray(glyph(ink=255, paper=0)).copy()
    noisy = base.copy()
    noisy[rng.random(base.shape) < 0.05] = 25  # faint salt noise everywhere, 10% of the ink level
    noisy[190, 290] = 255  # one bright speck in the far corner
    assert iou(preprocess_image(Image.fromarray(noisy), CFG), REF) > 0.85


def test_threshold_binarises():
    out = preprocess_image(glyph(), DataConfig(threshold=0.5))
    assert set(np.unique(out).tolist()) <= {0, 255}
    assert iou(out, REF) > 0.8


def test_blank_image_is_black():
    assert preprocess_image(Image.new("RGB", (200, 200), "white"), CFG).max() == 0
    assert preprocess_image(Image.new("RGBA", (200, 200), (0, 0, 0, 0)), CFG).max() == 0


def test_colour_distance_keeps_yellow_ink():
    img = Image.new("RGB", (200, 200), (255, 255, 255))
    ImageDraw.Draw(img).line([(60, 40), (60, 150), (140, 150)], fill=(255, 255, 0), width=14)
    lum = preprocess_image(img, CFG)
    col = preprocess_image(img, DataConfig(grayscale=False))
    assert iou(col, REF) > 0.85
    assert col.max() == 255 and lum.shape == col.shape


def test_large_image_goes_through_reduce_and_matches_small():
    big = glyph().resize((1800, 1200), Image.Resampling.NEAREST)  # 6x the reference
    assert iou(preprocess_image(big, CFG), REF) > 0.85


def test_preprocess_ink_matches_the_array_path():
    a = np.asarray(glyph(ink=255, paper=0))
    assert np.array_equal(preprocess_ink(a, CFG), preprocess_array(a, CFG))
    assert preprocess_ink(np.zeros((50, 40), np.uint8), CFG).max() == 0
