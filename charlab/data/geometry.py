"""Side inputs: where the ink sat on its page before crop-to-ink threw it away.

Crop-to-ink makes every glyph the same size, so a c and a C, an o and an O reach the model as
the same picture. On a fixed page they are not the same size: in Chars74K (a fixed tablet
canvas) c is 74±18 px tall and C 114±23 px. The Draw page is a fixed canvas too. A side-input
model (`DataConfig.side_inputs`) gets a small vector of that geometry beside the image, and its
head concatenates it with the pooled image features (charlab.models._layers.ConvClassifier).

The page is the whole image the character was found in, as preprocessing receives it:
- a Chars74K file: the tablet page (1200×900);
- the Draw page: the 280-px canvas. `charlab.data.strokes` maps a page onto that canvas with the
  page's height as the canvas's side, centre on centre, so measured in units of the page's
  HEIGHT about its CENTRE, the geometry of a redrawing is the page's own (up to the pen's width
  and the rare inward shift at an edge);
- `predict` on a file: that file's frame;
- an uploaded photo or scan (charlab.photo): the photo's frame. A photo has no fixed sheet:
  how big the character looks depends on how the user framed it, so there the vector says how
  the shot was framed, not how big the writing was. The Draw page says so beside the upload,
  and leaves the vector out where the model's is optional (below).
- CSV rows, idx images (MNIST), synthetic glyphs and digit-sum composites have no page (they are
  stored already cropped, or drawn without a sheet): side inputs are refused for them
  (charlab.data.sources.check_source), not faked, unless the model's side vector is optional
  (DataConfig.side_dropout: trained with that share of the vectors hidden, behind a "present"
  flag). Such a model reads a page-less image by its pixels alone, and the Draw page reads an
  uploaded photo that way too, since a photo's framing says nothing of the writing's size.

Every kind is a registry key; its vector has a fixed length (`side_dim`): `box` (the ink box as
it is) and `pen_box` (the box less the ink's stroke width, so a thick canvas pen and a thin
tablet pen give the same size for the same centre line).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..errors import CharlabError
from ..registry import Registry


@dataclass(frozen=True)
class SideKind:
    dim: int  # length of the vector
    fn: Callable[[Optional[tuple[int, int, int, int]], np.ndarray], np.ndarray]  # (ink box, ink-bright page H×W) -> float32 dim
    jitter: Callable  # (side float N×dim torch, generator-free, uses torch's RNG) -> N×dim, the training-time noise
    doc: str


SIDE_INPUTS: Registry[SideKind] = Registry("side input")


def _box(box: Optional[tuple[int, int, int, int]], ink: np.ndarray, pen: float = 0.0) -> np.ndarray:
    """(top, bottom, left, right) inclusive on an H×W page -> float32 5:
    [box height, box width, centre x, centre y, log(height / width)], lengths in page heights,
    the centre measured from the page's centre (0 = centred; + = right / down). No ink -> zeros.
    `pen` (pixels) is taken off the height and width: the box of the stroke's centre line."""
    if box is None:
        return np.zeros(5, np.float32)
    top, bottom, left, right = box
    h_page, w_page = ink.shape
    unit = float(max(h_page, 1))
    bh, bw = max(bottom - top + 1 - pen, 1.0), max(right - left + 1 - pen, 1.0)
    cx = ((left + right + 1) / 2 - w_page / 2) / unit
    cy = ((top + bottom + 1) / 2 - h_page / 2) / unit
    return np.array([bh / unit, bw / unit, cx, cy, math.log(bh / bw)], np.float32)


def _jitter_box(side):
    """Training noise on the box, so the head does not learn a writer's exact size: the
    `strong` augmentation rescales the crop by 0.85-1.1 and shifts it by up to 8% of its side,
    which would otherwise contradict a side vector that never moved. Height and width scale by
    independent log-normal factors (sd 0.08), the centre moves by N(0, 0.02) page heights, and
    the aspect entry is recomputed from the jittered sides so the vector stays self-consistent."""
    import torch

    n = side.shape[0]
    scale = torch.exp(torch.randn(n, 2, device=side.device) * 0.08)  # N×2
    hw = side[:, 0:2] * scale  # N×2
    centre = side[:, 2:4] + torch.randn(n, 2, device=side.device) * 0.02  # N×2
    blank = side[:, 0:1] <= 0  # no ink: keep the zeros
    aspect = torch.log(hw[:, 0:1].clamp_min(1e-6) / hw[:, 1:2].clamp_min(1e-6))  # N×1
    out = torch.cat([hw, centre, aspect], dim=1)  # N×5
    return torch.where(blank, side, out)


def stroke_width(ink: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """The ink's mean stroke width in pixels, 2·area / boundary: a band w wide and L long has
    area w·L and 2·L boundary pixels (those with a 4-neighbour off the ink)."""
    from .preprocess import _INK_LEVEL

    top, bottom, left, right = box
    a = ink[top:bottom + 1, left:right + 1]
    mask = np.pad(a > int(ink.max()) * _INK_LEVEL, 1)  # (h+2)×(w+2)
    inner = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    area = int(mask.sum())
    boundary = area - int(inner.sum())
    return 2.0 * area / boundary if boundary else 1.0


def _pen_box(box: Optional[tuple[int, int, int, int]], ink: np.ndarray) -> np.ndarray:
    """`box` less the stroke width: a pen-independent size (a 20-px canvas pen and a thin tablet
    pen give the same numbers for the same centre line)."""
    return _box(box, ink, stroke_width(ink, box) if box is not None else 0.0)


SIDE_INPUTS.register("box")(SideKind(5, _box, _jitter_box, "the ink box on its page: height, width, centre x, "
                                     "centre y (page heights, from the page's centre), log aspect ratio"))
SIDE_INPUTS.register("pen_box")(SideKind(5, _pen_box, _jitter_box, "as box, with the ink's mean stroke width "
                                         "(2 x area / boundary pixels) taken off the height and width"))


def side_kind(name: str) -> SideKind:
    return SIDE_INPUTS.get(name)  # an unknown name fails listing the valid ones


def side_dim(name: Optional[str]) -> int:
    """Length of the side vector of `name`; 0 for None (an image-only model)."""
    return 0 if not name else side_kind(name).dim


def page_side(name: str, ink: np.ndarray) -> np.ndarray:
    """The side vector (float32 dim) of an ink-bright uint8 H×W page, from the same ink box
    preprocessing crops to (charlab.data.preprocess.ink_bbox)."""
    from .preprocess import ink_bbox

    if ink.ndim != 2:
        raise CharlabError(f"side inputs need one H×W page, got an array of shape {ink.shape}")
    return side_kind(name).fn(ink_bbox(ink) if ink.size else None, ink)


def describe(kind: str, side, page: str = "page") -> str:
    """The side vector in words, for the Draw page ("32% × 28% of the canvas's height, centred")."""
    if kind not in ("box", "pen_box"):
        return f"side inputs {kind}: " + ", ".join(f"{float(v):.2f}" for v in side)
    h, w, cx, cy, _ = (float(v) for v in side)
    if h <= 0:
        return f"no ink on the {page}"
    where = ("centred" if abs(cx) < 0.05 and abs(cy) < 0.05 else
             " and ".join(x for x in (("left" if cx < 0 else "right") if abs(cx) >= 0.05 else "",
                                      ("high" if cy < 0 else "low") if abs(cy) >= 0.05 else "") if x))
    return f"{h:.0%} tall × {w:.0%} wide of the {page}'s height, {where}"
