"""The embedded default source: handwriting-like characters rendered from stroke skeletons.

Every image is drawn from one allograph of `_glyphs.GLYPHS` with its own random pen:
control-point jitter, a vertical warp (where the waist of B, 3, 8 sits), aspect, slant,
rotation, smooth low-frequency wobble along each stroke, pen width, pressure tapering at the
stroke ends, and now and then a flick where the pen lands or lifts. The ink is drawn bright
on dark at high resolution and goes through `preprocess_ink`, the same crop / pad / resize
as real images, so synthetic and real data share their geometry.

Source string: `synthetic` or `synthetic:key=value,...` with
  classes=digits|upper|lower|36|62   (default 62; 36 = digits + upper, as in the 36-class report)
  n=INT        images per class in the train split (default 200)
  test_n=INT   images per class in the test split (default 40)
  profile=uniform|longtail   longtail: one class with a single image, many small, a few full
  seed=INT     default: DataConfig.seed

Determinism: each (seed, split, class) has its own random stream, so the test split never
repeats a train image and changing n of one run does not change the images of another class.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

from ..config import DataConfig
from ..errors import CharlabError
from ._glyphs import CLASSES_62, GLYPHS
from ._registry import Progress
from .dataset import CharDataset, content_hash
from .preprocess import preprocess_ink

CLASS_SETS = {
    "digits": CLASSES_62[:10],
    "upper": CLASSES_62[10:36],
    "lower": CLASSES_62[36:],
    "36": CLASSES_62[:36],
    "62": CLASSES_62,
}
PROFILES = ("uniform", "longtail")
DEFAULTS = {"classes": "62", "n": 200, "test_n": 40, "profile": "uniform", "seed": None}
_SPLIT_STREAM = {"train": 0, "test": 1}  # independent seed streams per split
_CANVAS = 96  # px side of the high-resolution drawing before preprocess_ink shrinks it
_SPAN_SAMPLES = 8  # spline samples between two control points


# --------------------------------------------------------------------------- skeletons
@lru_cache(maxsize=None)
def _parse(glyph: str) -> tuple:
    """Glyph string -> tuple of strokes, each (points k×2 float, corner mask k bool)."""
    strokes = []
    for part in glyph.split("|"):
        pts: list[tuple[float, float]] = []
        corner: list[bool] = []
        for tok in part.split():
            if tok.startswith("@"):
                cx, cy, rx, ry, a0, a1 = (float(v) for v in tok[1:].split(","))
                steps = max(2, int(math.ceil(abs(a1 - a0) / 30.0)))
                for a in np.linspace(a0, a1, steps + 1):
                    r = math.radians(a)
                    pts.append((cx + rx * math.cos(r), cy - ry * math.sin(r)))
                    corner.append(False)
            else:
                sharp = tok.startswith("*")
                x, y = (float(v) for v in tok.lstrip("*").split(","))
                pts.append((x, y))
                corner.append(sharp)
        if pts:
            strokes.append((np.array(pts, dtype=np.float64), np.array(corner, dtype=bool)))
    return tuple(strokes)


def _allographs(ch: str) -> tuple[list[str], np.ndarray]:
    forms, weights = [], []
    for a in GLYPHS[ch]:
        w, g = a if isinstance(a, tuple) else (1.0, a)
        forms.append(g)
        weights.append(w)
    p = np.asarray(weights, dtype=np.float64)
    return forms, p / p.sum()


def _catmull_rom_basis(samples: int) -> np.ndarray:
    t = np.arange(samples) / samples  # [0, 1): the span's end is the next span's start
    t2, t3 = t * t, t * t * t
    return 0.5 * np.stack([-t3 + 2 * t2 - t, 3 * t3 - 5 * t2 + 2, -3 * t3 + 4 * t2 + t, t3 - t2], axis=1)  # S×4


_BASIS = _catmull_rom_basis(_SPAN_SAMPLES)


def _spline(q: np.ndarray) -> np.ndarray:
    """Smooth curves through control points q (b×k×2) -> dense polylines (b×m×2)."""
    b, k = q.shape[:2]
    if k < 3:
        # a straight piece: samples along the chord so wobble has points to bend
        t = np.linspace(0.0, 1.0, _SPAN_SAMPLES + 1)[None, :, None]
        return q[:, :1] + t * (q[:, -1:] - q[:, :1])
    ext = np.concatenate([2 * q[:, :1] - q[:, 1:2], q, 2 * q[:, -1:] - q[:, -2:-1]], axis=1)  # b×(k+2)×2, reflected ends
    windows = np.stack([ext[:, i:i + k - 1] for i in range(4)], axis=2)  # b×(k-1)×4×2
    dense = np.einsum("sj,bnjd->bnsd", _BASIS, windows).reshape(b, -1, 2)  # b×((k-1)·S)×2
    return np.concatenate([dense, q[:, -1:]], axis=1)


def _stroke_polyline(pts: np.ndarray, corner: np.ndarray) -> np.ndarray:
    """Split at corners, spline each piece, join: b×k×2 control points -> b×m×2."""
    k = pts.shape[1]
    cuts = [0] + [i for i in range(1, k - 1) if corner[i]] + [k - 1]
    pieces = [_spline(pts[:, a:b + 1]) for a, b in zip(cuts[:-1], cuts[1:])]
    return np.concatenate([p[:, :-1] for p in pieces[:-1]] + [pieces[-1]], axis=1)


# --------------------------------------------------------------------------- the pen
def _pens(rng: np.random.Generator, b: int) -> dict:
    """b writers' hands, one per sample: every random choice except the allograph (arrays of length b)."""
    return {
        "deform": rng.uniform(0.0, 5.0, b),  # smooth shape deformation, frame units (cap height = 100)
        "jitter": rng.uniform(0.3, 1.8, b),  # independent control-point noise on top of it
        "stroke_shift": rng.uniform(0.0, 2.5, b),  # strokes that do not quite meet
        "warp": rng.uniform(-0.18, 0.18, b),  # moves the waist of B, 3, 8, R up or down
        "aspect": np.exp(rng.normal(0.0, 0.15, b)),  # width / height
        "slant": np.clip(rng.normal(0.06, 0.14, b), -0.3, 0.45),  # shear, >0 leans right
        "rotate": np.radians(rng.normal(0.0, 4.0, b)),
        "wobble": rng.uniform(0.0, 1.8, b),  # amplitude of the smooth noise along strokes
        "wavelength": rng.uniform(35.0, 120.0, b),  # its length scale, frame units
        "width": np.clip(rng.lognormal(math.log(12.0), 0.35, b), 4.0, 24.0),  # pen width, frame units
        "taper": rng.uniform(0.0, 0.5, b),  # thinning at the stroke ends (pressure)
        "flick": rng.uniform(0.0, 0.25, b),  # chance of a hook where the pen lands or lifts
        "size": rng.uniform(0.6, 0.85, b),  # glyph's longer side as a fraction of the canvas
    }


def _affine(pen: dict) -> np.ndarray:
    """b×2×2: rotate · slant · aspect (row vectors are multiplied by its transpose)."""
    c, s = np.cos(pen["rotate"]), np.sin(pen["rotate"])
    b = len(c)
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # b×2×2
    shear = np.tile(np.eye(2), (b, 1, 1))
    shear[:, 0, 1] = -pen["slant"]  # x -= slant·y: the top moves right (y grows down)
    scale = np.tile(np.eye(2), (b, 1, 1))
    scale[:, 0, 0] = pen["aspect"]
    return rot @ shear @ scale


def _deform_field(rng: np.random.Generator, b: int, amp: np.ndarray):
    """A smooth random displacement field per sample: two plane waves per axis, so a curve
    stays a curve (independent jitter of arc points would make polygons)."""
    k = rng.uniform(2 * math.pi / 160, 2 * math.pi / 60, (b, 2, 2, 1)) * \
        np.sign(rng.uniform(-1, 1, (b, 2, 2, 1)))  # b × axis × wave × 1
    theta = rng.uniform(0, 2 * math.pi, (b, 2, 2))
    direction = np.stack([np.cos(theta), np.sin(theta)], -1)  # b×axis×wave×2
    phase = rng.uniform(0, 2 * math.pi, (b, 2, 2))

    def apply(p: np.ndarray) -> np.ndarray:  # p: b×k×2 -> displacement b×k×2
        proj = np.einsum("bkd,bawd->bawk", p, direction * k)  # b×axis×wave×k
        d = np.sin(proj + phase[..., None]).sum(2) / 2  # b×axis×k
        return amp[:, None, None] * d.transpose(0, 2, 1)

    return apply


def _wobble(line: np.ndarray, pen: dict, rng: np.random.Generator) -> np.ndarray:
    """Smooth noise along each stroke: line b×m×2 -> b×m×2."""
    b = len(line)
    seg = np.linalg.norm(np.diff(line, axis=1), axis=2)
    s = np.concatenate([np.zeros((b, 1)), np.cumsum(seg, axis=1)], axis=1)  # b×m arc length
    out = line.copy()
    amp, lam = pen["wobble"][:, None], pen["wavelength"][:, None]
    for d in range(2):
        for harmonic in (1.0, 2.3):
            phase = rng.uniform(0, 2 * math.pi, (b, 1))
            out[:, :, d] += amp / harmonic * np.sin(2 * math.pi * harmonic * s / lam + phase)
    return out


def _flick(line: np.ndarray, at_end: bool, rng: np.random.Generator) -> np.ndarray:
    """A short hook where the pen touches down (or lifts off) slightly off the path."""
    p0, p1 = (line[-1], line[-2]) if at_end else (line[0], line[1])
    d = p0 - p1
    d = d / (np.linalg.norm(d) + 1e-9)
    ang = rng.uniform(-2.2, 2.2)  # the hook bends away from the stroke's direction
    c, s = math.cos(ang), math.sin(ang)
    tip = p0 + rng.uniform(3.0, 8.0) * np.array([c * d[0] - s * d[1], s * d[0] + c * d[1]])
    return np.concatenate([line, tip[None]]) if at_end else np.concatenate([tip[None], line])


def skeletons(glyph: str, rng: np.random.Generator, pen: dict) -> list[np.ndarray]:
    """The pen paths of b samples of one allograph: a list over strokes of b×m×2 polylines
    in frame units (a dot is b×1×2). b = len(pen["width"])."""
    b = len(pen["width"])
    m = _affine(pen)
    field = _deform_field(rng, b, pen["deform"])
    lines = []
    for pts, corner in _parse(glyph):
        q = np.broadcast_to(pts, (b,) + pts.shape).copy()  # b×k×2
        q += field(q) + rng.normal(0.0, 1.0, q.shape) * pen["jitter"][:, None, None]
        q += rng.normal(0.0, 1.0, (b, 1, 2)) * pen["stroke_shift"][:, None, None]
        y = q[:, :, 1]
        y += pen["warp"][:, None] * y * (100.0 - y) / 100.0  # fixes 0 and 100, bends the middle
        q = q @ m.transpose(0, 2, 1)
        if len(pts) == 1:  # a dot
            lines.append(q)
            continue
        lines.append(_wobble(_stroke_polyline(q, corner), pen, rng))
    return lines


def draw(lines: list[np.ndarray], pen: dict, rng: np.random.Generator, canvas: int = _CANVAS) -> np.ndarray:
    """Rasterise one sample's polylines (each m×2, frame units; `pen` holds scalars)
    -> uint8 canvas×canvas, ink 255 on 0."""
    lines = [_flick(ln, bool(rng.random() < 0.5), rng) if len(ln) > 1 and rng.random() < pen["flick"] else ln
             for ln in lines]
    allpts = np.concatenate(lines)
    lo, hi = allpts.min(0), allpts.max(0)
    span = max(float((hi - lo).max()), 1.0)
    scale = pen["size"] * canvas / span  # px per frame unit
    width = pen["width"] * scale
    fit = (canvas - 2) / (span * scale + width)  # the pen's width beyond the path must fit too
    if fit < 1:
        scale, width = scale * fit, width * fit
    slack = np.maximum(canvas - (hi - lo) * scale - width, 0.0)
    offset = width / 2 + rng.uniform(0.0, 1.0, 2) * slack  # random position on the canvas
    im = Image.new("L", (canvas, canvas), 0)
    dr = ImageDraw.Draw(im)
    for line in lines:
        xy = ((line - lo) * scale + offset).tolist()  # m×2 pixels
        n = len(xy)
        if n == 1:
            (x, y), r = xy[0], width * 0.6
            dr.ellipse((x - r, y - r, x + r, y + r), fill=255)
            continue
        # pressure: a few chunks whose widths follow a profile thinner at both ends; the
        # polyline is dense, so plain wide lines (PIL's C path) need round caps only at seams
        bounds = np.linspace(0, n - 1, min(4, n - 1) + 1).round().astype(int).tolist()
        for a, b in zip(bounds[:-1], bounds[1:]):
            mid = (a + b) / 2 / (n - 1)
            w = width * (1.0 - pen["taper"] * (1.0 - math.sin(math.pi * mid)) ** 2)
            dr.line(xy[a:b + 1], fill=255, width=max(1, int(round(w))))
            r = max(0.5, w / 2 - 0.25)
            for x, y in (xy[a], xy[b]):
                dr.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return np.asarray(im)


def render_class(ch: str, n: int, rng: np.random.Generator, canvas: int = _CANVAS) -> tuple[list[np.ndarray], np.ndarray]:
    """n high-resolution samples of `ch` -> (list of uint8 canvas×canvas ink-on-dark, allograph index per sample)."""
    forms, p = _allographs(ch)
    which = rng.choice(len(forms), size=n, p=p)
    pen = _pens(rng, n)
    out: list[Optional[np.ndarray]] = [None] * n
    for a in range(len(forms)):
        idx = np.nonzero(which == a)[0]
        if len(idx) == 0:
            continue
        sub = {k: v[idx] for k, v in pen.items()}
        lines = skeletons(forms[a], rng, sub)
        for j, i in enumerate(idx):
            out[i] = draw([ln[j] for ln in lines], {k: float(v[j]) for k, v in sub.items()}, rng, canvas)
    return out, which


# --------------------------------------------------------------------------- the source
def parse_options(arg: str) -> dict:
    """`classes=36,n=100,...` -> options dict (DEFAULTS filled in); bad input -> CharlabError."""
    opts = dict(DEFAULTS)
    valid = "classes=digits|upper|lower|36|62, n=INT, test_n=INT, profile=uniform|longtail, seed=INT"
    for part in filter(None, (p.strip() for p in arg.split(","))):
        key, eq, value = (s.strip() for s in part.partition("="))
        if not eq or key not in DEFAULTS:
            raise CharlabError(f"synthetic: bad option {part!r}; valid: {valid}")
        if key == "classes":
            if value not in CLASS_SETS:
                raise CharlabError(f"synthetic: classes must be one of {', '.join(CLASS_SETS)}, got {value!r}")
            opts[key] = value
        elif key == "profile":
            if value not in PROFILES:
                raise CharlabError(f"synthetic: profile must be one of {', '.join(PROFILES)}, got {value!r}")
            opts[key] = value
        else:
            try:
                opts[key] = int(value)
            except ValueError:
                raise CharlabError(f"synthetic: {key} must be a whole number, got {value!r}") from None
    for key in ("n", "test_n"):
        if not 1 <= opts[key] <= 100_000:
            raise CharlabError(f"synthetic: {key} must be between 1 and 100000 images per class, got {opts[key]}")
    if opts["seed"] is not None and opts["seed"] < 0:
        raise CharlabError(f"synthetic: seed must be 0 or more, got {opts['seed']}")
    if opts["profile"] == "longtail" and opts["n"] < 4:
        raise CharlabError(f"synthetic: profile=longtail needs n of at least 4 (its largest classes), got {opts['n']}")
    return opts


def class_counts(n_classes: int, n: int, profile: str, seed: int) -> np.ndarray:
    """Train images per class. longtail, like the unbalanced 36-class report: exactly one class
    with a single image, about 60% small (3-25% of n), about 25% medium (25-75%) and 15% full (n);
    which class gets which is a seeded permutation."""
    if profile == "uniform":
        return np.full(n_classes, n, dtype=np.int64)
    rng = np.random.default_rng([seed, 2])
    order = rng.permutation(n_classes)
    n_full = max(1, round(0.15 * n_classes))
    n_medium = round(0.25 * n_classes) if n_classes > 3 else 0
    counts = np.empty(n_classes, dtype=np.int64)
    small_lo, small_hi = max(2.0, 0.03 * n), max(2.0, 0.25 * n)
    for rank, c in enumerate(order):
        if rank == 0:
            counts[c] = 1
        elif rank <= n_full:
            counts[c] = n
        elif rank <= n_full + n_medium:
            counts[c] = round(rng.uniform(0.25, 0.75) * n)
        else:  # log-uniform: most small classes are very small
            counts[c] = round(math.exp(rng.uniform(math.log(small_lo), math.log(small_hi))))
    return np.clip(counts, 2, n) * (counts != 1) + (counts == 1)  # only the chosen class has one image


def generate(classes: list[str], counts, seed: int, split: str, cfg: DataConfig,
             progress: Optional[Progress] = None) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor", list[str]]:
    """Images of `classes` (counts[i] of class i) -> (uint8 N×1×S×S, int64 labels N, int64 allograph N,
    content hash N of each high-resolution canvas before preprocessing).

    Each character has its own random stream keyed by (seed, split, its index among the 62),
    so `A` is the same in classes=upper and classes=62, and no test image repeats a train one.
    """
    total = int(np.sum(counts))
    images = np.zeros((total, cfg.image_size, cfg.image_size), np.uint8)  # N×S×S
    labels = np.empty(total, np.int64)
    allograph = np.empty(total, np.int64)
    hashes: list[str] = []
    at = 0
    for label, (ch, k) in enumerate(zip(classes, counts)):
        k = int(k)
        rng = np.random.default_rng([seed, _SPLIT_STREAM[split], CLASSES_62.index(ch)])
        drawn, which = render_class(ch, k, rng)
        for j, a in enumerate(drawn):
            hashes.append(content_hash(np.ascontiguousarray(a).data))
            images[at + j] = preprocess_ink(a, cfg)
        labels[at:at + k] = label
        allograph[at:at + k] = which
        at += k
        if progress:
            progress(at, total, f"drawing synthetic {split} characters")
    import torch

    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels), torch.from_numpy(allograph), hashes


def synthetic_source(arg: str, cfg: DataConfig, split: str, progress: Optional[Progress]) -> CharDataset:
    opts = parse_options(arg)
    seed = cfg.seed if opts["seed"] is None else opts["seed"]
    if seed < 0:  # numpy's seed sequences take non-negative entropy only
        raise CharlabError(f"synthetic: the seed must be 0 or more, got {seed}")
    classes = CLASS_SETS[opts["classes"]]
    if split == "train":
        counts = class_counts(len(classes), opts["n"], opts["profile"], seed)
    else:  # the test split is balanced whatever the profile: per-class scores stay comparable
        counts = np.full(len(classes), opts["test_n"], dtype=np.int64)
    images, labels, allograph, hashes = generate(classes, counts, seed, split, cfg, progress)
    prefix = "synthetic#" if split == "train" else "synthetic#test-"
    return CharDataset(images=images, labels=labels, classes=list(classes),
                       paths=[f"{prefix}{i}" for i in range(len(labels))], source="", hashes=hashes,
                       info={"allograph": allograph, "part": split, "seed": seed,
                             "options": {k: v for k, v in opts.items() if k != "seed"}})
