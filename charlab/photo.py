"""A user's own photo or scan of one character (the Draw page's upload, `predict` on a file) ->
a Pillow image the normal preprocessing can read.

A phone photo differs from a dataset scan in three ways that matter here:
- size: 12 MP, where the model needs 28×28; decoding is capped and the image shrunk first;
- rotation: phones store it in EXIF; the image is turned upright;
- lighting: a shadow or a lamp makes the paper darker on one side than on the other.
  Preprocessing takes the border's median as the paper level (one number), so a shadow would
  count as ink and widen the crop to the whole photo. The paper is flattened first: its level is
  estimated per region (strokes removed by a rank filter at low resolution, then smoothed) and
  divided out.

For a side-input model (DataConfig.side_inputs) the photo's frame is the page its geometry is
measured on: a photo has no fixed sheet, so the vector says how the shot was framed (see
charlab.data.geometry), and the Draw page says so.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from .data.preprocess import MAX_IMAGE_PIXELS
from .errors import DataError

MAX_BYTES = 25 << 20  # a 12 MP phone JPEG is 3-8 MB
MAX_SIDE = 1024  # px: plenty for one character, and the rank filter below stays fast
_BG_SIDE = 64  # px: the resolution the paper level is estimated at (strokes are 1-3 px there)


def open_photo(data: bytes, name: str = "the file") -> Image.Image:
    """Bytes of a PNG/JPEG/… -> an upright, at most MAX_SIDE, evenly lit grayscale image.
    Anything that is not a readable image of a sane size is a DataError with a one-line reason."""
    if len(data) == 0:
        raise DataError(f"{name} is empty")
    if len(data) > MAX_BYTES:
        raise DataError(f"{name} is {len(data) / 2**20:.0f} MB; the limit is {MAX_BYTES >> 20} MB")
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_IMAGE_PIXELS:
            raise DataError(f"{name} is {img.width}×{img.height} pixels; the limit is {MAX_IMAGE_PIXELS:,} pixels")
        img.draft("L", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at a reduced scale (no effect on PNG)
        img = ImageOps.exif_transpose(img)
        img.load()
    except DataError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as e:
        what = "not an image Pillow can read" if isinstance(e, UnidentifiedImageError) else f"unreadable ({e})"
        raise DataError(f"{name} is {what}; upload a PNG or JPEG of one character") from None
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))  # transparent -> paper
        img = Image.alpha_composite(white, img.convert("RGBA"))
    gray = img.convert("L")
    if max(gray.size) > MAX_SIDE:
        gray.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BOX)
    return flatten_lighting(gray)


def flatten_lighting(gray: Image.Image) -> Image.Image:
    """Divide out uneven paper brightness. Works for either polarity: the paper is what the
    border mostly shows, and the strokes are removed with a max (dark ink) or min (bright ink)
    filter before the paper level is smoothed."""
    a = np.asarray(gray, dtype=np.float32)  # H×W
    h, w = a.shape
    if min(h, w) < 16:
        return gray
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    dark_ink = np.median(border) > (a.min() + a.max()) / 2
    k = max(h, w) / _BG_SIDE
    small = gray.resize((max(1, round(w / k)), max(1, round(h / k))), Image.Resampling.BOX)
    rank = ImageFilter.MaxFilter(5) if dark_ink else ImageFilter.MinFilter(5)
    bg = small.filter(rank).filter(ImageFilter.GaussianBlur(2)).resize((w, h), Image.Resampling.BILINEAR)
    b = np.asarray(bg, dtype=np.float32)
    if dark_ink:  # paper -> 255, ink keeps its contrast to the paper around it
        out = 255.0 * a / np.maximum(b, 1.0)
    else:  # bright ink on dark paper: subtract the local paper level
        out = a - b
        out = 255.0 * out / max(float(out.max()), 1.0)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "L")
