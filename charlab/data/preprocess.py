"""Raw image -> the uint8 S×S array a model sees: ink bright on dark, centred, square.

The steps are the ones the reports used, each switchable through `DataConfig`:

1. grayscale: any Pillow mode (1, L, P, RGB, RGBA, CMYK, I;16, I, F ...) to one channel.
   Transparent-background drawings use their alpha as the ink; other images with alpha are
   composited onto white first. `grayscale=False` measures ink as the largest per-channel
   distance from the background colour instead of luminance, so yellow ink on white survives.
2. polarity: dark ink on a light background is inverted (`invert="auto"` decides from the
   border's median), then the background level is subtracted and the ink stretched to 255.
3. crop to the ink's bounding box (pixels above a fraction of the peak, with a tiny mass trim
   so a stray speck does not widen the box).
4. pad to a square around the box's centre, keeping the aspect ratio, with `margin` on each side.
5. resize to S×S with antialiasing, stretch the peak back to 255 (thin strokes stay visible).
6. optional threshold (binarise).

`preprocess_ink` is steps 3-6 for an array that is already ink-bright-on-dark; the synthetic
generator calls it, so synthetic and real images get the same geometry.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from ..config import DataConfig

PREPROCESS_VERSION = 1  # part of every cache key: bump when the output of these functions changes

# Deliberately lower than Pillow's default (89 M): a 1200×900 scan is 1 M pixels, and a
# decompression bomb is refused before its pixels are allocated. Pillow warns above this and
# raises above twice it; charlab's loaders treat both as "skip this file".
MAX_IMAGE_PIXELS = 40_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

_INK_LEVEL = 0.2  # a pixel is ink for cropping when above this fraction of the peak
_SPECK_MASS = 0.002  # share of the ink mass trimmed from each side of the box (only for sizeable ink)
_BLANK_PEAK = 8  # peak ink below this (of 255) is noise on an empty image: return black
_RESAMPLE = Image.Resampling.BILINEAR  # Pillow's bilinear widens its kernel when shrinking: antialiased, no ringing


def _transparent_background(alpha: np.ndarray) -> bool:
    return float(np.median(_border(alpha))) < 128


def _border(a: np.ndarray) -> np.ndarray:
    return np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]])


def _numeric_to_uint8(img: Image.Image) -> np.ndarray:
    """I;16 / I / F images -> uint8 on their natural scale (16-bit divided down, floats in [0,1] scaled up)."""
    a = np.asarray(img)
    if img.mode.startswith("I;16"):
        return (a.astype(np.uint32) // 257).astype(np.uint8)
    a = a.astype(np.float64)
    lo, hi = float(a.min()), float(a.max())
    if img.mode == "F" and lo >= 0 and hi <= 1:
        a = a * 255
    elif lo < 0 or hi > 255:
        if img.mode == "I" and lo >= 0 and hi <= 65535:  # 16-bit PNGs open as "I" in older Pillow
            a = a / 257
        else:
            a = (a - lo) * (255 / max(hi - lo, 1e-12))
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def to_gray(img: Image.Image, cfg: DataConfig) -> tuple[np.ndarray, bool]:
    """One uint8 channel (H×W) and whether it is already ink-bright (alpha or colour-distance ink)."""
    mode = img.mode
    if mode in ("1", "P", "PA") or mode.endswith("A") or mode.endswith("a") or "transparency" in img.info:
        if mode == "1" or (mode == "P" and "transparency" not in img.info):
            return np.asarray(img.convert("L")), False
        rgba = img.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"))
        if _transparent_background(alpha):
            return alpha, True  # a drawing on a transparent canvas: wherever it is opaque is ink
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img, mode = Image.alpha_composite(white, rgba).convert("RGB"), "RGB"
    if mode.startswith("I") or mode == "F":
        return _numeric_to_uint8(img), False
    if mode == "L":
        return np.asarray(img), False
    if cfg.grayscale:
        return np.asarray(img.convert("L")), False
    rgb = np.asarray(img.convert("RGB")).astype(np.int16)  # H×W×3
    bg = np.median(np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]), axis=0).astype(np.int16)
    return np.abs(rgb - bg).max(axis=2).astype(np.uint8), True


def orient(a: np.ndarray, cfg: DataConfig, ink_bright: bool = False) -> np.ndarray:
    """Gray uint8 H×W -> ink bright on a zero background, peak stretched to 255 (all zero if blank)."""
    border = _border(a) if a.shape[0] > 1 and a.shape[1] > 1 else a.ravel()
    mid = len(border) // 2
    level = int(np.partition(border, mid)[mid])  # the border's median: the paper, whatever the ink does
    if cfg.invert == "yes":
        flip = True
    elif cfg.invert == "no" or ink_bright:
        flip = False
    else:  # auto: a background lighter than the middle of the range means dark ink on light paper
        flip = level > (int(a.min()) + int(a.max())) / 2
    if flip:
        a = 255 - a
        level = 255 - level
    if cfg.invert != "auto":
        level = 0  # forced polarity: trust the user's claim, even where the border is inky
    if level > 0:  # grey paper: its level becomes 0
        ink = np.subtract(a, level, dtype=np.int16)
        np.clip(ink, 0, 255, out=ink)
        a = ink.astype(np.uint8)
    peak = int(a.max())
    if peak < _BLANK_PEAK:
        return np.zeros(a.shape, np.uint8)
    if peak < 255:
        a = ((a.astype(np.uint16) * 255 + peak // 2) // peak).astype(np.uint8)
    return a


def ink_bbox(ink: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right), inclusive, of the ink; None when there is none."""
    peak = int(ink.max())
    if peak == 0:
        return None
    mask = ink > peak * _INK_LEVEL
    rows = mask.sum(axis=1)
    cols = mask.sum(axis=0)
    total = int(rows.sum())
    if total < 500:  # small drawings cannot afford to lose a speck: the plain bounding box
        r, c = np.flatnonzero(rows), np.flatnonzero(cols)
        return int(r[0]), int(r[-1]), int(c[0]), int(c[-1])
    cut = total * _SPECK_MASS

    def span(counts: np.ndarray) -> tuple[int, int]:
        c = np.cumsum(counts)
        lo = int(np.searchsorted(c, cut, side="right"))
        hi = int(np.searchsorted(c, total - cut, side="left"))
        return lo, max(lo, hi)

    top, bottom = span(rows)
    left, right = span(cols)
    return top, bottom, left, right


def preprocess_ink(a: np.ndarray, cfg: DataConfig, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Ink-bright uint8 H×W -> uint8 S×S: crop to the ink, pad to a square with margin, resize, threshold.

    `shape` (H, W) asks for another output shape (a digit-sum model's wide input): the ink is
    then padded to that aspect ratio instead of a square.
    """
    size = cfg.image_size
    out_h, out_w = shape or (size, size)
    a = np.ascontiguousarray(a, dtype=np.uint8)
    h, w = a.shape
    box = ink_bbox(a) if cfg.crop else (0, h - 1, 0, w - 1)
    if box is None or h == 0 or w == 0:
        return np.zeros((out_h, out_w), np.uint8)
    top, bottom, left, right = box
    aspect = out_w / out_h  # 1 for the usual square output
    side = max(bottom - top + 1, (right - left + 1) / aspect)  # height of the padded box
    # margin applies around cropped ink; an uncropped image is only made square (it has its own border)
    margin = cfg.margin if cfg.crop else 0.0
    padded = max(int(np.ceil(side / (1 - 2 * margin))), 1)
    padded_w = max(int(round(padded * aspect)), 1)
    cy, cx = (top + bottom + 1) / 2, (left + right + 1) / 2
    y0, x0 = int(round(cy - padded / 2)), int(round(cx - padded_w / 2))
    # Pillow's crop outside the image fills with 0: the zero padding, without allocating a big array
    box_img = Image.fromarray(a).crop((x0, y0, x0 + padded_w, y0 + padded))  # padded×padded_w
    if getattr(cfg, "stroke_norm", None):  # one pen width for every source (tablet, scan, canvas): 4x the output
        from .strokes import normalise_width

        box_img = normalise_width(box_img, cfg.stroke_norm, (4 * out_w, 4 * out_h))
        padded, padded_w = 4 * out_h, 4 * out_w
    resize = (padded, padded_w) != (out_h, out_w)
    out = np.asarray(box_img.resize((out_w, out_h), _RESAMPLE, reducing_gap=3.0) if resize else box_img)  # H×W
    peak = int(out.max())
    if 0 < peak < 255:  # downscaling thin strokes lowers their peak; MNIST strokes reach 255
        out = ((out.astype(np.uint16) * 255 + peak // 2) // peak).astype(np.uint8)
    if cfg.threshold is not None:
        out = np.where(out >= cfg.threshold * 255, 255, 0).astype(np.uint8)
    return np.ascontiguousarray(out)


def reduce_large(img: Image.Image, size: int) -> Image.Image:
    """Shrink very large images by an integer factor before the precise steps (box average, fast).

    Keeps at least 8*S pixels on the short side, so ink that fills a third of the image still
    has about 2.5x the output resolution before the final antialiased resize.
    """
    k = min(img.size) // (8 * size)
    if k < 2:
        return img
    if img.mode in ("1", "P") or img.mode.startswith("I;16"):
        return img  # reduce() does not take these modes; to_gray converts them at full size
    return img.reduce(k)


def page_ink(img: Image.Image, cfg: DataConfig) -> np.ndarray:
    """Any Pillow image -> its whole page as ink-bright uint8 H×W (steps 1-2, before the crop):
    upright, very large images shrunk by an integer factor (relative geometry kept)."""
    if img.format == "JPEG" and img.getexif().get(0x0112, 1) != 1:  # phone photos store their rotation in EXIF
        img = ImageOps.exif_transpose(img)
    img = reduce_large(img, cfg.image_size)
    gray, ink_bright = to_gray(img, cfg)
    return orient(gray, cfg, ink_bright=ink_bright)


def preprocess_image(img: Image.Image, cfg: DataConfig, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Any Pillow image -> uint8 S×S (or `shape`), ink bright on dark (see the module docstring for the steps)."""
    return preprocess_ink(page_ink(img, cfg), cfg, shape)


def preprocess_image_side(img: Image.Image, cfg: DataConfig, shape: tuple[int, int] | None = None
                          ) -> tuple[np.ndarray, np.ndarray | None]:
    """`preprocess_image`, and the side vector (float32 G, charlab.data.geometry) of the ink on
    this image's page, measured before the crop; None when `cfg.side_inputs` is off."""
    ink = page_ink(img, cfg)
    return preprocess_ink(ink, cfg, shape), _side(ink, cfg)


def preprocess_array(gray: np.ndarray, cfg: DataConfig, *, ink_bright: bool = False,
                     shape: tuple[int, int] | None = None) -> np.ndarray:
    """A single-channel uint8 H×W of either polarity (a CSV row, an idx image) -> uint8 S×S (or `shape`)."""
    return preprocess_ink(orient(gray, cfg, ink_bright=ink_bright), cfg, shape)


def preprocess_array_side(gray: np.ndarray, cfg: DataConfig, *, ink_bright: bool = False
                          ) -> tuple[np.ndarray, np.ndarray | None]:
    """`preprocess_array` and the side vector of the array as its own page (None when off)."""
    ink = orient(gray, cfg, ink_bright=ink_bright)
    return preprocess_ink(ink, cfg), _side(ink, cfg)


def _side(ink: np.ndarray, cfg: DataConfig) -> np.ndarray | None:
    kind = getattr(cfg, "side_inputs", None)
    if not kind:
        return None
    from .geometry import page_side

    return page_side(kind, ink)
