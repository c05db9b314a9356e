"""Batched, seeded augmentation of character images, on tensors, right before the forward pass.

`augment_batch(x, cfg, generator)` takes float N×1×H×W in [0, 1] (ink bright on dark) and
draws independent parameters for every image from `generator`. It runs as a handful of
whole-batch tensor ops, never a Python loop over images, because per-sample transforms in
DataLoader workers are what slows training down on a 2-core machine:

1. stroke width: cross-shaped max-pool dilation / min-pool erosion, fractional widths blended
   between whole-pixel levels;
2. geometry: rotation, shear, zoom, shift and perspective composed into ONE 3×3 matrix per
   image, plus a smooth elastic displacement field (Simard et al. 2003), sampled with ONE
   `F.grid_sample` call;
3. blur: per-image Gaussian sigma, applied as two batched matmuls with banded Gaussian
   matrices (no per-image conv kernels, any sigma, exact zero padding);
4. random erasing (never more than 40% of a character's ink, else that image is left unerased);
5. Gaussian pixel noise.

Never flips: a mirrored character is often another character (b/d, p/q, 2/S).

All scalar parameters come from one fixed-layout block of uniforms drawn in the same order
whatever the config says, so turning one op on or off in the app does not re-roll the others.
Images whose op was not drawn are left bit-for-bit untouched by that op, and the `none` preset
returns its input itself.

Presets live in `AUGMENT_PRESETS` (a Registry of functions returning a fresh AugmentConfig), beside
AugmentConfig in charlab.config, so configs are built without importing torch; re-exported here.
`preview(images, cfg, seed, k)` returns K variants of each image and the parameters drawn for
each, stable for a given seed: variant j of image i depends only on (seed, i, j, the image).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from .config import AUGMENT_PRESETS, AugmentConfig, get_preset, list_presets  # noqa: F401 (the presets' home is config)
from .errors import CharlabError

# Columns of the per-image block of uniforms. The layout is fixed (and has spare columns) so a
# given seed draws the same rotation whether or not, say, blur is switched on.
_U = {name: i for i, name in enumerate((
    "rotate_on", "rotate", "shear_on", "shear_x", "shear_y", "scale_on", "scale", "shift_on", "shift_x",
    "shift_y", "persp_on", "persp_a", "persp_b", "elastic_on", "stroke_on", "stroke", "blur_on", "blur",
    "noise_on", "erase_on", "erase_area", "erase_aspect", "erase_y", "erase_x",
))}
_NUM_UNIFORMS = 32

# Random erasing keeps an image only if at least this share of its ink survives: a rectangle
# over the whole of a thin "1" teaches nothing but noise.
ERASE_MIN_INK_KEPT = 0.6
# Aspect ratios of the erased rectangle (h/w), log-uniform, as in torchvision's RandomErasing.
_ERASE_ASPECT = (0.3, 3.3)


@dataclass(frozen=True)
class OpSpec:
    """One augmentation as the app shows it: its config fields and what its strength means."""

    name: str
    fields: tuple[str, ...]  # AugmentConfig fields holding the strength (ranges or scalars)
    p_field: str  # the AugmentConfig field holding its probability
    help: str


OPS: tuple[OpSpec, ...] = (
    OpSpec("rotate", ("rotate",), "rotate_p", "rotation in degrees, counter-clockwise positive; (low, high)"),
    OpSpec("shear", ("shear_x", "shear_y"), "shear_p", "shear factors (x' = x + s·y); (low, high) each"),
    OpSpec("scale", ("scale",), "scale_p", "zoom factor (low, high); >1 enlarges"),
    OpSpec("shift", ("shift",), "shift_p", "max translation as a fraction of the side"),
    OpSpec("perspective", ("perspective",), "perspective_p", "corner displacement as a fraction of the side (< 0.5)"),
    OpSpec("elastic", ("elastic_alpha", "elastic_sigma"), "elastic_p",
           "elastic distortion: displacement RMS in pixels, smoothness sigma in pixels"),
    OpSpec("stroke", ("stroke",), "stroke_p", "stroke width change in pixels per side (<0 thins, >0 thickens)"),
    OpSpec("blur", ("blur_sigma",), "blur_p", "Gaussian blur sigma in pixels (low, high)"),
    OpSpec("noise", ("noise_std",), "noise_p", "Gaussian pixel noise std on the [0, 1] scale"),
    OpSpec("erase", ("erase_frac",), "erase_p", "erased rectangle area as a fraction of the image (low, high)"),
)
_GEOMETRIC_P = ("rotate_p", "shear_p", "scale_p", "shift_p", "perspective_p", "elastic_p")


# ---------------------------------------------------------------------------------------------
# validation


def _pair(cfg: AugmentConfig, name: str) -> tuple[float, float]:
    v = getattr(cfg, name)
    try:
        lo, hi = (float(t) for t in v)
    except (TypeError, ValueError):
        raise CharlabError(f"augment.{name} must be a (low, high) pair of numbers, got {v!r}") from None
    if lo > hi:
        raise CharlabError(f"augment.{name}: low {lo} is above high {hi}")
    return lo, hi


def validate_augment(cfg: AugmentConfig) -> None:
    """Explain a bad AugmentConfig in words (a CharlabError), before any tensor work."""
    for f in dataclasses.fields(cfg):
        if f.name.endswith("_p"):
            p = getattr(cfg, f.name)
            if not isinstance(p, (int, float)) or not 0 <= p <= 1:
                raise CharlabError(f"augment.{f.name} is a probability in [0, 1], got {p!r}")
    for name in ("rotate", "shear_x", "shear_y", "stroke"):
        _pair(cfg, name)
    lo, hi = _pair(cfg, "scale")
    if lo <= 0:
        raise CharlabError(f"augment.scale must be positive zoom factors, got {cfg.scale!r}")
    lo, hi = _pair(cfg, "blur_sigma")
    if lo < 0:
        raise CharlabError(f"augment.blur_sigma must be >= 0, got {cfg.blur_sigma!r}")
    lo, hi = _pair(cfg, "erase_frac")
    if lo < 0 or hi >= 1:
        raise CharlabError(f"augment.erase_frac must lie in [0, 1), got {cfg.erase_frac!r}")
    if not 0 <= cfg.shift <= 0.5:
        raise CharlabError(f"augment.shift must be in [0, 0.5] (a fraction of the side), got {cfg.shift}")
    if not 0 <= cfg.perspective < 0.5:
        raise CharlabError(f"augment.perspective must be in [0, 0.5), got {cfg.perspective}")
    if cfg.elastic_alpha < 0 or cfg.elastic_sigma <= 0:
        raise CharlabError(f"augment.elastic_alpha must be >= 0 and elastic_sigma > 0, "
                           f"got {cfg.elastic_alpha}, {cfg.elastic_sigma}")
    if cfg.noise_std < 0:
        raise CharlabError(f"augment.noise_std must be >= 0, got {cfg.noise_std}")


# ---------------------------------------------------------------------------------------------
# drawing parameters


@dataclass
class _Draw:
    """Per-image parameters (tensors of length N on the images' device); `on` masks say which ran."""

    rotate: torch.Tensor
    rotate_on: torch.Tensor
    shear_x: torch.Tensor
    shear_y: torch.Tensor
    shear_on: torch.Tensor
    scale: torch.Tensor
    scale_on: torch.Tensor
    shift_x: torch.Tensor  # fraction of W
    shift_y: torch.Tensor  # fraction of H
    shift_on: torch.Tensor
    persp_a: torch.Tensor  # projective row terms, as corner displacement fractions
    persp_b: torch.Tensor
    persp_on: torch.Tensor
    elastic_on: torch.Tensor
    elastic_noise: Optional[torch.Tensor]  # N×2×Kh×Kw unit normals at the coarse nodes, or None
    elastic_basis: Optional[tuple]  # (H×Kh, W×Kw) node-to-pixel weights, see _elastic_basis
    stroke: torch.Tensor
    stroke_on: torch.Tensor
    blur: torch.Tensor
    blur_on: torch.Tensor
    noise_on: torch.Tensor
    noise: Optional[torch.Tensor]  # K×1×H×W standard normal for the K images with noise_on (in order), or None
    erase_on: torch.Tensor
    erase_box: torch.Tensor  # N×4 int64 (y0, x0, h, w)


def _draw(cfg: AugmentConfig, n: int, h: int, w: int, generator: Optional[torch.Generator],
          device: torch.device) -> _Draw:
    gdev = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(n, _NUM_UNIFORMS, generator=generator, device=gdev, dtype=torch.float64).to(device)
    rot = _pair(cfg, "rotate")
    shx, shy = _pair(cfg, "shear_x"), _pair(cfg, "shear_y")
    sc = _pair(cfg, "scale")
    st = _pair(cfg, "stroke")
    bl = _pair(cfg, "blur_sigma")
    er = _pair(cfg, "erase_frac")
    ranges = {"rotate": rot, "shear_x": shx, "shear_y": shy, "scale": sc, "shift_x": (-cfg.shift, cfg.shift),
              "shift_y": (-cfg.shift, cfg.shift), "persp_a": (-cfg.perspective, cfg.perspective),
              "persp_b": (-cfg.perspective, cfg.perspective), "stroke": st, "blur": bl, "erase_area": er,
              "erase_aspect": (math.log(_ERASE_ASPECT[0]), math.log(_ERASE_ASPECT[1]))}
    # an op with a zero range is as good as off: skipping it keeps those images exact
    probs = {"rotate_on": (cfg.rotate_p, rot != (0.0, 0.0)),
             "shear_on": (cfg.shear_p, shx != (0.0, 0.0) or shy != (0.0, 0.0)),
             "scale_on": (cfg.scale_p, sc != (1.0, 1.0)), "shift_on": (cfg.shift_p, cfg.shift > 0),
             "persp_on": (cfg.perspective_p, cfg.perspective > 0), "elastic_on": (cfg.elastic_p, cfg.elastic_alpha > 0),
             "stroke_on": (cfg.stroke_p, st != (0.0, 0.0)), "blur_on": (cfg.blur_p, bl[1] > 0),
             "noise_on": (cfg.noise_p, cfg.noise_std > 0), "erase_on": (cfg.erase_p, er[1] > 0)}
    # Every range and every probability applied to the block at once (two ops on N×32, not two
    # dozen on N-vectors): value = low + (high − low)·u, on = u < p (p = −1 never draws)
    low, span, p = [0.0] * _NUM_UNIFORMS, [1.0] * _NUM_UNIFORMS, [-1.0] * _NUM_UNIFORMS  # others: u itself
    for name, (a, b) in ranges.items():
        low[_U[name]], span[_U[name]] = a, b - a
    for name, (prob, active) in probs.items():
        if active and prob > 0:
            p[_U[name]] = prob
    block = lambda vals: torch.tensor(vals, dtype=torch.float64, device=device)  # noqa: E731
    values, ons = block(low) + block(span) * u, u < block(p)  # N×32 each
    col = {k: values[:, i] for k, i in _U.items()}
    on = {k: ons[:, _U[k]] for k in probs}

    d = _Draw(
        rotate=col["rotate"], rotate_on=on["rotate_on"], shear_x=col["shear_x"], shear_y=col["shear_y"],
        shear_on=on["shear_on"], scale=col["scale"], scale_on=on["scale_on"],
        shift_x=col["shift_x"], shift_y=col["shift_y"], shift_on=on["shift_on"],
        persp_a=col["persp_a"], persp_b=col["persp_b"], persp_on=on["persp_on"],
        elastic_on=on["elastic_on"], elastic_noise=None, elastic_basis=None,
        stroke=col["stroke"], stroke_on=on["stroke_on"],
        blur=col["blur"], blur_on=on["blur_on"],
        noise_on=on["noise_on"], noise=None,
        erase_on=on["erase_on"],
        erase_box=torch.zeros(n, 4, dtype=torch.int64, device=device),
    )
    if d.erase_on.any():
        area = col["erase_area"] * (h * w)
        aspect = torch.exp(col["erase_aspect"])
        eh = torch.sqrt(area * aspect).round().clamp(1, h)
        ew = torch.sqrt(area / aspect).round().clamp(1, w)
        y0 = (col["erase_y"] * (h - eh + 1)).floor().clamp(max=h - eh)
        x0 = (col["erase_x"] * (w - ew + 1)).floor().clamp(max=w - ew)
        d.erase_box = torch.stack([y0, x0, eh, ew], 1).long()
    # The fields come last. The elastic one is drawn for the whole batch whenever the config
    # enables it, so an image's field depends on the seed and its position only, not on which
    # other images happened to draw the op.
    if cfg.elastic_p > 0 and cfg.elastic_alpha > 0:
        bh = _elastic_basis(h, cfg.elastic_sigma, device, torch.float32)  # H×Kh
        bw = _elastic_basis(w, cfg.elastic_sigma, device, torch.float32)  # W×Kw
        d.elastic_noise = torch.randn(n, 2, bh.shape[1], bw.shape[1], generator=generator, device=gdev).to(device)
        d.elastic_basis = (bh, bw)
    if cfg.noise_p > 0 and cfg.noise_std > 0:
        # the pixel noise is the exception, drawn for the images that use it only: one normal per
        # pixel of the whole batch was half the cost of the draw, and it comes last, so no other
        # op's draw depends on how many images it took
        k = int(d.noise_on.sum())
        d.noise = torch.randn(k, 1, h, w, generator=generator, device=gdev).to(device)
    return d


# ---------------------------------------------------------------------------------------------
# the ops


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image separable Gaussian blur: the batch becomes the channels of one image and each
    image gets its own 1-D kernel through a grouped (depthwise) conv, rows then columns.

    Kernels reach 3 sigma (of the largest sigma) and sum to 1; the padding is zeros, so ink near
    the border fades as it would on a larger canvas. Batched 28×28 matmuls with banded Gaussian
    matrices were 6× slower on CPU here.
    """
    n, c, h, w = x.shape
    sigma = sigma.to(x.dtype).clamp_min(1e-3)
    r = max(1, int(math.ceil(3 * float(sigma.max()))))
    d = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-(d**2) / (2 * sigma[:, None] ** 2))  # N×(2r+1)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # NC×(2r+1)
    y = F.conv2d(x.reshape(1, n * c, h, w), k[:, None, :, None], padding=(r, 0), groups=n * c)
    y = F.conv2d(y, k[:, None, None, :], padding=(0, r), groups=n * c)
    return y.reshape(n, c, h, w)


def _elastic_basis(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """size×K weights from K noise nodes spaced sigma apart (one beyond each edge) to each pixel.

    A field `Bh @ Z @ Bwᵀ` of unit normals Z is smooth on the scale of sigma (Simard et al.'s
    Gaussian-smoothed random field, evaluated from a coarse grid so it costs two small matmuls,
    where smoothing a full-resolution noise image or F.interpolate was 5-20× slower on CPU).
    Rows are scaled to unit L2 norm, so every pixel's displacement has unit variance and
    elastic_alpha reads as the RMS displacement in pixels.
    """
    k = int(math.ceil(size / sigma)) + 3
    nodes = (torch.arange(k, device=device, dtype=dtype) - 1) * sigma  # -sigma … beyond the far edge
    pix = torch.arange(size, device=device, dtype=dtype) + 0.5
    b = torch.exp(-((pix[:, None] - nodes[None, :]) ** 2) / (2 * sigma**2))  # size×K
    return b / b.norm(dim=1, keepdim=True)


def _cross(x: torch.Tensor, op: Callable) -> torch.Tensor:
    """Grey dilation (op=torch.maximum) or erosion (torch.minimum) by a cross (4-neighbour)
    element: strokes grow or shrink one pixel per side without the blocky corners of a 3×3
    square. Outside the image counts as background (0), so ink at the border erodes too.

    Maximums of shifted views: F.max_pool2d on one channel was ~10× slower on CPU here.
    """
    p = F.pad(x, (1, 1, 1, 1))  # N×C×(H+2)×(W+2)
    horiz = op(p[..., 1:-1, :-2], p[..., 1:-1, 2:])
    vert = op(p[..., :-2, 1:-1], p[..., 2:, 1:-1])
    return op(op(horiz, vert), x)


def _stroke(x: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """Thicken (width > 0) or thin (< 0) strokes by |width| pixels per side, fractions blended
    linearly between the whole-pixel dilations/erosions around them."""
    lo = torch.floor(width)
    frac = (width - lo).to(x.dtype)
    kmin, kmax = int(lo.min()), int(lo.max()) + 1
    level = {0: x}
    for k in range(1, kmax + 1):
        level[k] = _cross(level[k - 1], torch.maximum)
    for k in range(-1, kmin - 1, -1):
        level[k] = _cross(level[k + 1], torch.minimum)
    lo4 = lo[:, None, None, None]
    below, above = level[kmin], level[kmin + 1]  # the two whole-pixel levels around each width
    for k in range(kmin + 1, kmax):
        below = torch.where(lo4 == k, level[k], below)
        above = torch.where(lo4 == k, level[k + 1], above)
    return below + frac[:, None, None, None] * (above - below)  # N×1×H×W


def _geometry_matrix(d: _Draw, idx: torch.Tensor, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
    """Forward 3×3 maps (input -> output) for the images in idx, in isotropic units of half the
    longer side centred on the image, so a rotation of a wide composite stays a rotation."""
    m = len(idx)
    half = max(h, w) / 2

    def pick(v: torch.Tensor, on: torch.Tensor, off: float) -> torch.Tensor:
        return torch.where(on[idx], v[idx], torch.full_like(v[idx], off)).to(dtype)

    theta = torch.deg2rad(pick(d.rotate, d.rotate_on, 0.0))
    shx, shy = pick(d.shear_x, d.shear_on, 0.0), pick(d.shear_y, d.shear_on, 0.0)
    s = pick(d.scale, d.scale_on, 1.0)
    tx = pick(d.shift_x, d.shift_on, 0.0) * (w / half)
    ty = pick(d.shift_y, d.shift_on, 0.0) * (h / half)
    # perspective terms are scaled so a corner moves by about `perspective` of its distance
    pa = pick(d.persp_a, d.persp_on, 0.0) * (half / (w / 2))
    pb = pick(d.persp_b, d.persp_on, 0.0) * (half / (h / 2))

    # persp @ move @ rot @ shear @ zoom, multiplied out: 3×3 products of five M×3×3 matrices
    # assembled element by element were ~300 small ops, a fifth of the whole augmentation
    # y points down: counter-clockwise as seen on screen is x' = x·c + y·s, y' = −x·s + y·c
    c, sn = torch.cos(theta), torch.sin(theta)
    a, b = s * (c + sn * shy), s * (c * shx + sn)  # rot @ shear @ zoom, first row
    e, f = s * (c * shy - sn), s * (c - sn * shx)  # second row
    one = torch.ones_like(a)
    rows = (a, b, tx, e, f, ty, pa * a + pb * e, pa * b + pb * f, pa * tx + pb * ty + one)
    return torch.stack(rows, 1).view(m, 3, 3)  # M×3×3


def _warp(x: torch.Tensor, d: _Draw, idx: torch.Tensor, alpha: float) -> torch.Tensor:
    """All geometric ops and the elastic field of images idx in one grid_sample."""
    _, c, h, w = x.shape
    half = max(h, w) / 2
    fwd = _geometry_matrix(d, idx, h, w, torch.float64)
    inv = torch.linalg.inv(fwd)  # M×3×3: output -> input, isotropic units
    # rows 0 and 1 rescaled to grid_sample's [-1, 1] per axis (align_corners=False: pixel edges)
    inv = (torch.tensor([half / (w / 2), half / (h / 2), 1.0], dtype=inv.dtype, device=inv.device)[:, None] * inv)
    m = inv.to(x.dtype)[:, :, :, None, None]  # M×3×3×1×1
    ys = ((torch.arange(h, device=x.device, dtype=x.dtype) + 0.5 - h / 2) / half)[None, :, None]  # 1×H×1
    xs = ((torch.arange(w, device=x.device, dtype=x.dtype) + 0.5 - w / 2) / half)[None, None, :]  # 1×1×W
    # Each coordinate plane is built as (small M×1×W) + (small M×H×1): one full-size op per plane.
    # A batched 3×3 matmul over every pixel, or ops on a trailing dim of 2, were 5-10× slower.
    gx = (m[:, 0, 0] * xs + m[:, 0, 2]) + m[:, 0, 1] * ys  # M×H×W
    gy = (m[:, 1, 0] * xs + m[:, 1, 2]) + m[:, 1, 1] * ys
    if bool(d.persp_on[idx].any()):
        den = (m[:, 2, 0] * xs + m[:, 2, 2]) + m[:, 2, 1] * ys
        gx, gy = gx / den, gy / den
    if d.elastic_noise is not None:
        bh, bw = d.elastic_basis
        # alpha pixels -> grid units per axis, and 0 for images that did not draw the op; scaling
        # the coarse noise is cheaper than scaling the field
        on = d.elastic_on[idx].to(x.dtype) * alpha
        scale = torch.stack([on * (2 / w), on * (2 / h)], 1)[:, :, None, None]  # M×2×1×1
        field = bh @ ((d.elastic_noise[idx] * scale) @ bw.T)  # M×2×H×W
        gx, gy = gx + field[:, 0], gy + field[:, 1]
    # planes stacked on dim 1 then viewed as M×H×W×2: grid_sample takes the strided view, and
    # interleaving them into a contiguous last dim of 2 cost 5× more than the stack
    grid = torch.stack([gx, gy], 1).permute(0, 2, 3, 1)  # M×H×W×2
    return F.grid_sample(x.index_select(0, idx), grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _erase(x: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    n, _, h, w = x.shape
    rows = torch.arange(h, device=x.device)[None, :, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    y0, x0, eh, ew = (box[:, i, None, None] for i in range(4))
    in_rows = (rows >= y0) & (rows < y0 + eh)  # M×H×1
    in_cols = (cols >= x0) & (cols < x0 + ew)  # M×1×W
    return x.masked_fill((in_rows & in_cols)[:, None], 0.0)  # M×1×H×W


def _on_subset(x: torch.Tensor, on: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Apply fn(idx) -> new images for the images with `on`; others stay bit-for-bit the same."""
    idx = on.nonzero().squeeze(1)
    if len(idx) == 0:
        return x
    return x.index_copy(0, idx, fn(idx))  # index_copy: ~5× faster than out[idx] = … here


def _apply(x: torch.Tensor, cfg: AugmentConfig, d: _Draw) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the drawn ops; returns the images and the final erase mask (erasures that were kept)."""
    x = _on_subset(x, d.stroke_on, lambda i: _stroke(x.index_select(0, i), d.stroke[i]))
    geo = d.rotate_on | d.shear_on | d.scale_on | d.shift_on | d.persp_on | d.elastic_on
    x = _on_subset(x, geo, lambda i: _warp(x, d, i, cfg.elastic_alpha))
    x = _on_subset(x, d.blur_on, lambda i: _blur(x.index_select(0, i), d.blur[i]))
    erased = d.erase_on.clone()
    if erased.any():
        idx = erased.nonzero().squeeze(1)
        before = x.index_select(0, idx)
        after = _erase(before, d.erase_box[idx])
        keep = after.sum((1, 2, 3)) >= ERASE_MIN_INK_KEPT * before.sum((1, 2, 3))
        erased[idx] = keep
        x = x.index_copy(0, idx, torch.where(keep[:, None, None, None], after, before))
    if d.noise is not None:
        x = _on_subset(x, d.noise_on, lambda i: (x.index_select(0, i) + cfg.noise_std * d.noise).clamp_(0.0, 1.0))
    return x, erased


# ---------------------------------------------------------------------------------------------
# public entry points


def _check_input(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 1 or not x.is_floating_point():
        got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise CharlabError(f"augment_batch needs float images N×1×H×W in [0, 1], got {got}")


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Augment float N×1×H×W images in [0, 1]; independent parameters per image from `generator`.

    Same shape, dtype and device as `x` (any H×W, CPU or CUDA). The `none` config (every
    probability 0) returns `x` itself. The generator may live on the CPU while `x` is on CUDA.
    """
    out, _ = _augment(x, cfg, generator)
    return out


def augment_batch_with_params(x: torch.Tensor, cfg: AugmentConfig,
                              generator: Optional[torch.Generator]) -> tuple[torch.Tensor, list[dict]]:
    """`augment_batch` plus, per image, the parameters it drew: a dict with one key per op
    (None where the op did not run). Consumes the generator exactly as augment_batch does."""
    out, d = _augment(x, cfg, generator)
    if d is None:
        return out, [_params_row(None, cfg, i) for i in range(len(x))]
    return out, [_params_row(d, cfg, i) for i in range(len(x))]


def _augment(x: torch.Tensor, cfg: AugmentConfig, generator: Optional[torch.Generator]):
    _check_input(x)
    validate_augment(cfg)
    if cfg.is_identity() or len(x) == 0:
        return x, None
    n, _, h, w = x.shape
    d = _draw(cfg, n, h, w, generator, x.device)
    out, erased = _apply(x, cfg, d)
    d.erase_on = erased
    return out, d


def _params_row(d: Optional[_Draw], cfg: AugmentConfig, i: int) -> dict:
    keys = ("rotate", "shear_x", "shear_y", "scale", "shift_x", "shift_y", "perspective", "elastic",
            "stroke", "blur", "noise", "erase")
    row: dict = dict.fromkeys(keys)
    if d is None:
        return row

    def val(on: torch.Tensor, v: torch.Tensor) -> Optional[float]:
        return round(float(v[i]), 4) if bool(on[i]) else None

    row["rotate"] = val(d.rotate_on, d.rotate)
    row["shear_x"], row["shear_y"] = val(d.shear_on, d.shear_x), val(d.shear_on, d.shear_y)
    row["scale"] = val(d.scale_on, d.scale)
    row["shift_x"], row["shift_y"] = val(d.shift_on, d.shift_x), val(d.shift_on, d.shift_y)
    if bool(d.persp_on[i]):
        row["perspective"] = (round(float(d.persp_a[i]), 4), round(float(d.persp_b[i]), 4))
    row["elastic"] = float(cfg.elastic_alpha) if bool(d.elastic_on[i]) else None
    row["stroke"] = val(d.stroke_on, d.stroke)
    row["blur"] = val(d.blur_on, d.blur)
    row["noise"] = float(cfg.noise_std) if bool(d.noise_on[i]) else None
    if bool(d.erase_on[i]):
        row["erase"] = tuple(int(t) for t in d.erase_box[i])  # (y0, x0, h, w) in pixels
    return row


@dataclass
class Preview:
    """K augmented variants of each of N images, and what was drawn for each."""

    images: torch.Tensor  # uint8 N×K×1×H×W
    params: list[list[dict]]  # [N][K] dicts as in augment_batch_with_params


def preview(images: torch.Tensor, cfg: AugmentConfig, seed: int, k: int = 8) -> Preview:
    """K variants of every image, stable for a seed: variant j of image i depends only on
    (seed, i, j, the image), so showing more images or more variants re-rolls none of those
    already shown. Each variant is its own one-image augment_batch call with its own generator:
    a preview holds a few dozen images, and one-image tensors are too small to be worth batching."""
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 1:
        raise CharlabError("preview needs uint8 images N×1×H×W")
    if k < 1:
        raise CharlabError(f"preview needs k >= 1 variants, got {k}")
    validate_augment(cfg)
    n, _, h, w = images.shape
    out = torch.empty(n, k, 1, h, w, dtype=torch.uint8)
    params: list[list[dict]] = []
    for i in range(n):
        x = images[i : i + 1].float().div(255.0)  # 1×1×H×W
        rows = []
        for j in range(k):
            g = torch.Generator().manual_seed(_mix_seed(_mix_seed(seed, i), j))
            y, row = augment_batch_with_params(x, cfg, g)
            out[i, j] = to_uint8(y[0]).cpu()
            rows.append(row[0])
        params.append(rows)
    return Preview(images=out, params=params)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [0, 1] -> uint8 with rounding (the inverse of charlab.data.to_float)."""
    return x.clamp(0, 1).mul(255.0).round_().to(torch.uint8)


def _mix_seed(seed: int, i: int) -> int:
    # splitmix64-style mixing so (seed, i) and (seed + 1, i - 1) give unrelated streams
    z = (int(seed) * 0x9E3779B97F4A7C15 + (i + 1) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFF
