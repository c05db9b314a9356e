"""Real handwriting redrawn as Draw-canvas pen strokes: skeleton -> polylines -> constant-width pen.

A tablet's ink varies in width and texture; a stroke drawn on the Draw page has one width and
none. To train for, and measure on, what the canvas produces, a real image is turned into the
strokes someone would have drawn:

1. ink: the image's ink-bright grey levels (charlab's own grayscale + polarity steps);
2. thin: binarise and thin the ink to a one-pixel skeleton (Zhang & Suen 1984, vectorised);
3. trace: walk the skeleton into polylines (endpoints and junctions split it; closed loops
   such as an O become one closed polyline; a branch that stays inside the ink's disk at its
   junction is a thinning spur and is dropped);
4. place the page on the canvas: scaled so the page's height is the canvas's side, as a
   character written on a fixed sheet keeps its size and position on a fixed canvas (a c stays
   smaller than a C); shifted sideways only when the ink would leave the canvas;
5. redraw the polylines with a round pen of one width, white on black, on a canvas-sized image:
   the Draw page's `image_data`, which then goes through charlab's normal preprocessing.

    from charlab.data.strokes import image_strokes, render_strokes
    lines = image_strokes(Image.open("A.png"))     # [k×2 float arrays of (x, y) canvas pixels]
    canvas = render_strokes(lines, pen=PEN_PX)     # PIL RGB, CANVAS_PX × CANVAS_PX, white on black

For the browser test: `image_strokes` returns each stroke as a polyline in canvas coordinates
(x to the right, y down, origin at the canvas's top-left corner), in drawing order; replay each
polyline as mouse down at its first point, moves through the rest, mouse up. A polyline of a
single point is a dot (the dot of an i): press and release there.

`stroke_dataset(ds, cfg, pens)` renders a whole CharDataset (through `CharDataset.paths`, the
original files) once per pen width and caches the result on disk like a source, so a training
run or a benchmark pays the thinning once.
"""
from __future__ import annotations

import hashlib
import json
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..config import DataConfig

# The Draw page's canvas: its side in CSS pixels and its pen widths (pages/draw.py asks these).
CANVAS_PX = 280
PEN_PX = 20  # the pen slider's default
PEN_RANGE = (6, 40)  # the pen slider's range

STROKES_VERSION = 2  # part of the stroke cache's key: bump when the rendering changes (2: spurs by the ink's disk)
_WORK_PX = 420  # the page is thinned at this height (1.5× the canvas): skeletons accurate to a canvas pixel
_INK_LEVEL = 0.35  # of the peak: where the ink's edge is for thinning
_SIMPLIFY_PX = 0.6  # Ramer-Douglas-Peucker tolerance in canvas pixels (far under any pen radius)

Progress = Callable[[int, int, str], None]


# --------------------------------------------------------------------------- thinning
def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a boolean H×W mask -> boolean H×W skeleton (one pixel wide, 8-connected).

    Each sub-iteration removes, all at once, the border pixels whose removal keeps the shape
    connected (exactly one 0->1 transition around them, 2..6 neighbours) on one side (south-east,
    then north-west), until nothing changes. Work is limited to the mask's bounding box."""
    mask = np.asarray(mask, bool)
    out = np.zeros_like(mask)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if len(rows) == 0:
        return out
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    img = np.pad(mask[r0:r1, c0:c1], 1).astype(np.uint8)  # (h+2)×(w+2), a zero frame so every pixel has 8 neighbours
    while True:
        changed = False
        for step in (0, 1):
            c = img[1:-1, 1:-1]
            # neighbours P2..P9, clockwise from north
            p = [img[:-2, 1:-1], img[:-2, 2:], img[1:-1, 2:], img[2:, 2:],
                 img[2:, 1:-1], img[2:, :-2], img[1:-1, :-2], img[:-2, :-2]]
            b = sum(p)  # neighbours set
            a = sum(((p[i] == 0) & (p[(i + 1) % 8] == 1)) for i in range(8))  # 0->1 transitions around
            if step == 0:
                side = (p[0] * p[2] * p[4] == 0) & (p[2] * p[4] * p[6] == 0)
            else:
                side = (p[0] * p[2] * p[6] == 0) & (p[0] * p[4] * p[6] == 0)
            kill = (c == 1) & (b >= 2) & (b <= 6) & (a == 1) & side
            if kill.any():
                c[kill] = 0
                changed = True
        if not changed:
            break
    out[r0:r1, c0:c1] = img[1:-1, 1:-1].astype(bool)
    return out


# --------------------------------------------------------------------------- tracing
_N4 = ((-1, 0), (0, 1), (1, 0), (0, -1))
_DIAG = ((-1, 1), (1, 1), (1, -1), (-1, -1))


def _neighbours(pix: set, p: tuple[int, int]) -> list[tuple[int, int]]:
    """m-adjacency: the 4-neighbours, and a diagonal neighbour only when no 4-neighbour links the
    two already, so a one-pixel staircase is a path, not a chain of false junctions."""
    r, c = p
    out = [(r + dr, c + dc) for dr, dc in _N4 if (r + dr, c + dc) in pix]
    for dr, dc in _DIAG:
        q = (r + dr, c + dc)
        if q in pix and (r + dr, c) not in pix and (r, c + dc) not in pix:
            out.append(q)
    return out


def trace(skeleton: np.ndarray, radius: Optional[np.ndarray] = None) -> list[np.ndarray]:
    """Boolean skeleton H×W -> polylines, each k×2 float (x, y) pixel coordinates.

    Paths run between endpoints and junctions; a closed loop without either becomes one closed
    polyline (first point repeated at the end); an isolated pixel is a one-point polyline.

    `radius` (float H×W, the ink's distance to its background) prunes thinning spurs: a branch
    from an endpoint to a junction whose end's disk lies inside the junction's disk adds no ink,
    so it is a bump of the outline, not a stroke. A length rule cannot tell the two apart:
    thinning shortens every branch by about the ink's radius, so the short arms of a bold t,
    k or I would go with the bumps (version 1 of the stroke set lost them)."""
    pix = set(zip(*np.nonzero(skeleton)))
    nb = {p: _neighbours(pix, p) for p in pix}
    seen: set = set()
    paths: list[tuple[list, bool]] = []  # (pixels, is a spur candidate)

    def edge(a, b):
        return (a, b) if a < b else (b, a)

    def walk(start, nxt) -> list:
        path, prev, cur = [start, nxt], start, nxt
        seen.add(edge(start, nxt))
        while len(nb[cur]) == 2:
            step = nb[cur][0] if nb[cur][1] == prev else nb[cur][1]
            if edge(cur, step) in seen:
                break
            seen.add(edge(cur, step))
            path.append(step)
            prev, cur = cur, step
        return path

    for p in sorted(pix):  # sorted: the same skeleton always traces to the same strokes
        if len(nb[p]) == 0:
            paths.append(([p], False))
        elif len(nb[p]) != 2:
            for q in nb[p]:
                if edge(p, q) not in seen:
                    path = walk(p, q)
                    ends = (len(nb[path[0]]), len(nb[path[-1]]))
                    paths.append((path, 1 in ends and any(e > 2 for e in ends)))
    for p in sorted(pix):  # what is left are closed loops of degree-2 pixels
        for q in nb[p]:
            if edge(p, q) not in seen:
                paths.append((walk(p, q), False))
    out = []
    for path, spur in paths:
        if spur and radius is not None:
            end, junction = (path[0], path[-1]) if len(nb[path[0]]) == 1 else (path[-1], path[0])
            if np.hypot(end[0] - junction[0], end[1] - junction[1]) + radius[end] <= radius[junction]:
                continue
        out.append(np.array([(c, r) for r, c in path], dtype=np.float64))  # (x, y)
    return out


def simplify(line: np.ndarray, tol: float) -> np.ndarray:
    """Ramer-Douglas-Peucker: drop the points within `tol` of the chord (k×2 -> m×2, ends kept)."""
    if len(line) < 3:
        return line
    keep = np.zeros(len(line), bool)
    keep[0] = keep[-1] = True
    stack = [(0, len(line) - 1)]
    while stack:
        i, j = stack.pop()
        if j <= i + 1:
            continue
        a, b = line[i], line[j]
        seg = b - a
        n = float(np.hypot(*seg))
        pts = line[i + 1:j] - a
        d = np.abs(pts[:, 0] * seg[1] - pts[:, 1] * seg[0]) / n if n > 0 else np.hypot(pts[:, 0], pts[:, 1])
        k = int(np.argmax(d))
        if d[k] > tol:
            keep[i + 1 + k] = True
            stack += [(i, i + 1 + k), (i + 1 + k, j)]
    return line[keep]


# --------------------------------------------------------------------------- image -> strokes
def ink_of(img: Image.Image, cfg: Optional[DataConfig] = None) -> np.ndarray:
    """Any Pillow image -> its ink, bright on a zero background (uint8 H×W), at a working height
    of about `_WORK_PX`: charlab's own grayscale and polarity steps, so strokes start from the ink
    the model's preprocessing would see."""
    from .preprocess import orient, to_gray

    cfg = cfg or DataConfig()
    k = img.size[1] // _WORK_PX
    if k >= 2 and img.mode not in ("1", "P") and not img.mode.startswith("I;16"):
        img = img.reduce(k)  # box average: the ink keeps its shape, the work shrinks by k²
    gray, ink_bright = to_gray(img, cfg)
    return orient(gray, cfg, ink_bright=ink_bright)


def ink_strokes(ink: np.ndarray) -> list[np.ndarray]:
    """Ink-bright uint8 H×W -> polylines (x, y) in its own pixel coordinates."""
    from scipy.ndimage import distance_transform_edt

    peak = int(ink.max()) if ink.size else 0
    if peak == 0:
        return []
    mask = ink > peak * _INK_LEVEL
    return trace(thin(mask), radius=distance_transform_edt(mask))  # radius: H×W float, 0 off the ink


def to_canvas(lines: Sequence[np.ndarray], page_hw: tuple[int, int], canvas: int = CANVAS_PX,
              pen: float = PEN_PX) -> list[np.ndarray]:
    """Polylines in page pixels -> canvas pixels: the page's height becomes the canvas's side and
    its centre the canvas's centre; the ink is shifted (never rescaled, unless it is wider than
    the canvas) just enough to stay half a pen inside every edge."""
    if not lines:
        return []
    h, w = page_hw
    scale = canvas / h
    pts = np.concatenate(lines)
    lo, hi = pts.min(0) * scale, pts.max(0) * scale  # ink box in scaled page pixels (x, y)
    room = canvas - pen
    span = hi - lo
    if span.max() > room:  # wider than the canvas: shrink about the box to fit (rare on a 4:3 page)
        f = room / span.max()
        scale, lo, hi = scale * f, lo * f, hi * f
    offset = np.array([(canvas - w * scale) / 2, (canvas - h * scale) / 2])
    lo_c, hi_c = lo + offset, hi + offset
    offset += np.clip(pen / 2 - lo_c, 0, None) - np.clip(hi_c - (canvas - pen / 2), 0, None)
    return [simplify(ln * scale + offset, _SIMPLIFY_PX) for ln in lines]


def image_strokes(img: Image.Image, cfg: Optional[DataConfig] = None, canvas: int = CANVAS_PX,
                  pen: float = PEN_RANGE[1]) -> list[np.ndarray]:
    """A real image of one character -> the pen strokes to draw it on the Draw canvas.

    Returns polylines as float k×2 arrays of (x, y) in canvas pixels (origin top-left, y down),
    within [pen/2, canvas - pen/2]; replay each as one mouse stroke (a one-point polyline is a
    dot). `pen` only keeps the strokes inside the canvas (default: the widest pen, so the same
    polylines serve every pen width); render them with any width."""
    ink = ink_of(img, cfg)
    return to_canvas(ink_strokes(ink), ink.shape, canvas, pen)


def render_strokes(lines: Sequence[np.ndarray], pen: float = PEN_PX, canvas: int = CANVAS_PX) -> Image.Image:
    """Polylines in canvas pixels -> the canvas as the Draw page reads it: RGB, white round-capped
    pen of width `pen` on black, `canvas` × `canvas`."""
    im = Image.new("L", (canvas, canvas), 0)
    d = ImageDraw.Draw(im)
    r = pen / 2
    for ln in lines:
        pts = [tuple(map(float, p)) for p in ln]
        if len(pts) > 1:
            d.line(pts, fill=255, width=max(1, int(round(pen))), joint="curve")
        for x, y in (pts if len(pts) > 1 else pts[:1]):  # round caps and joins (Pillow's are square)
            d.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return im.convert("RGB")


def stroke_image(img: Image.Image, cfg: DataConfig, pen: float = PEN_PX,
                 shape: Optional[tuple[int, int]] = None) -> np.ndarray:
    """A real image -> the uint8 S×S model input of the same character drawn on the canvas with `pen`."""
    from .preprocess import preprocess_image

    return preprocess_image(render_strokes(image_strokes(img, cfg), pen), cfg, shape)


# --------------------------------------------------------------------------- datasets
def _render_chunk(job: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Worker: n originals -> (uint8 n×K×S×S, float32 n×K×G side vectors measured on the canvas; G = 0 when off)."""
    refs, cfg_dict, widths = job
    from ..config import from_dict
    from .geometry import side_dim
    from .preprocess import preprocess_image_side
    from .sources import Originals

    cfg = from_dict(DataConfig, cfg_dict)
    g = side_dim(cfg.side_inputs)
    out = np.zeros((len(refs), widths.shape[1], cfg.image_size, cfg.image_size), np.uint8)
    side = np.zeros((len(refs), widths.shape[1], g), np.float32)
    with Originals() as files:
        for i, ref in enumerate(refs):
            lines = image_strokes(files.open(ref), cfg)
            for j, pen in enumerate(widths[i]):
                out[i, j], s = preprocess_image_side(render_strokes(lines, pen), cfg)
                if s is not None:
                    side[i, j] = s
    return out, side


def pen_widths(n_images: int, k: int, seed: int, pens: tuple[float, float] = (10.0, 32.0)) -> np.ndarray:
    """N×K random constant pen widths (canvas pixels), uniform in `pens`, seeded."""
    rng = np.random.default_rng(seed)
    return np.round(rng.uniform(pens[0], pens[1], size=(n_images, k)), 1)


def stroke_dataset(ds, cfg: DataConfig, pens, progress: Optional[Progress] = None):
    """Every image of `ds` redrawn as canvas strokes: `pens` is one width for all, or N×K widths
    (K renderings per image, image-major: rendering j of image i is row i*K + j of the result).

    Needs `ds.paths` (the original files). Cached on disk under the content hashes, the widths and
    the preprocessing, so the thinning is paid once per dataset."""
    from ..config import to_dict
    from .cache import cache_key, load_cached, prep_options, save_cached
    from .dataset import CharDataset
    from .geometry import side_dim
    from .sources import chunks, map_chunks

    if ds.paths is None:
        from ..errors import DataError

        raise DataError("stroke rendering needs the original images (this dataset has no paths)")
    n = len(ds)
    widths = np.full((n, 1), float(pens)) if np.isscalar(pens) else np.asarray(pens, dtype=np.float64).reshape(n, -1)
    k = widths.shape[1]
    ident = ds.hashes if ds.hashes is not None else ds.paths
    key = cache_key({"strokes": STROKES_VERSION, "prep": prep_options(cfg),
                     "images": hashlib.sha256(json.dumps(list(ident)).encode()).hexdigest(),
                     "pens": hashlib.sha256(widths.tobytes()).hexdigest(), "canvas": CANVAS_PX})
    labels = ds.labels.repeat_interleave(k)
    cached = load_cached(key)
    if cached is not None and len(cached) == n * k:
        cached.labels, cached.classes = labels, list(ds.classes)
        return cached
    cfg_dict = to_dict(cfg)
    bounds = chunks(n)
    parts = map_chunks(_render_chunk, [(ds.paths[a:b], cfg_dict, widths[a:b]) for a, b in bounds],
                       [b - a for a, b in bounds], progress, "drawing strokes")
    out = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, k, cfg.image_size, cfg.image_size), np.uint8)  # N×K×S×S
    side = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, k, side_dim(cfg.side_inputs)), np.float32)  # N×K×G
    s = out.shape[-1]
    rep = lambda xs: [x for x in xs for _ in range(k)] if xs is not None else None  # noqa: E731
    res = CharDataset(images=torch.from_numpy(out.reshape(n * k, 1, s, s)), labels=labels, classes=list(ds.classes),
                      paths=rep(ds.paths), source=f"strokes({ds.source})", hashes=rep(ds.hashes),
                      info={"pen": torch.from_numpy(widths.reshape(-1).astype(np.float32))})
    if cfg.side_inputs:  # the canvas is the redrawing's page (to_canvas: page height = canvas side)
        res.info["side"] = torch.from_numpy(np.ascontiguousarray(side.reshape(n * k, -1)))  # (N·K)×G
    save_cached(key, res)
    return res


def with_strokes(train, full, index: np.ndarray, cfg: DataConfig, progress: Optional[Progress] = None):
    """`train` (= `full.subset(index)`) plus `cfg.strokes` stroke redrawings of each of its images.

    The redrawings are rendered for the whole of `full` with pens seeded by `cfg.seed`, so the
    disk cache serves every validation split of the same source; the copies of the validation
    images are simply not used. Labels follow their originals; hashes are new (a redrawing is
    other content than its original)."""
    from .dataset import CharDataset, content_hash

    k = cfg.strokes
    pens = pen_widths(len(full), k, cfg.seed, tuple(cfg.stroke_pens))
    drawn = stroke_dataset(full, cfg, pens, progress=progress)
    rows = torch.as_tensor((np.asarray(index)[:, None] * k + np.arange(k)).reshape(-1))
    copies = drawn.subset(rows)
    hashes = None
    if train.hashes is not None and copies.hashes is not None:
        hashes = train.hashes + [content_hash(f"{h}:strokes:{p:.1f}".encode())
                                 for h, p in zip(copies.hashes, copies.info["pen"].tolist())]
    paths = train.paths + copies.paths if train.paths is not None and copies.paths is not None else None
    info = {key: v for key, v in train.info.items() if not (isinstance(v, torch.Tensor) and len(v) == len(train))}
    if train.side is not None:
        info["side"] = torch.cat([train.side, copies.side])  # float32 (N + N·K)×G
    return CharDataset(images=torch.cat([train.images, copies.images]), labels=torch.cat([train.labels, copies.labels]),
                       classes=list(train.classes), paths=paths, skipped=list(train.skipped), source=train.source,
                       info=info, hashes=hashes)


# --------------------------------------------------------------------------- stroke-width normalisation
def _disk(radius: float) -> list[tuple[int, int]]:
    r = int(np.ceil(radius))
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= radius * radius + 1e-9]


def normalise_width(box: Image.Image, width: float, work: tuple[int, int] = (112, 112)) -> Image.Image:
    """A padded ink box (mode L, ink bright) -> the same ink redrawn as its skeleton with one pen
    `width` (a fraction of the box's side), at `work`×`work` pixels: tablet ink, scans and canvas
    strokes then reach the model with the same stroke width (DataConfig.stroke_norm). `work` is (W, H)."""
    w, h = work
    a = np.asarray(box.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=3.0))
    peak = int(a.max())
    if peak == 0:
        return Image.fromarray(np.zeros((h, w), np.uint8))
    skel = thin(a > peak * _INK_LEVEL)  # H×W bool
    r = max(width * h / 2, 0.5)
    pad = int(np.ceil(r))
    src = np.pad(skel, pad)
    out = np.zeros_like(skel)
    for dy, dx in _disk(r):  # dilation by a disk: a round pen along the skeleton
        out |= src[pad + dy:pad + dy + h, pad + dx:pad + dx + w]
    return Image.fromarray(out.astype(np.uint8) * 255)
