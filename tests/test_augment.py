"""Batched augmentation: identity, seeding, per-image independence, ink kept, geometry conventions,
the preview API. Real Chars74K images where it matters (ink kept by every preset)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from charlab.augment import (AUGMENT_PRESETS, OPS, augment_batch, augment_batch_with_params, get_preset,
                             list_presets, preview, to_uint8)
from charlab.config import AugmentConfig
from charlab.errors import CharlabError, UnknownNameError

PRESETS = ["none", "light", "strong", "report36", "chars74k_report"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ink_images(n: int = 16, h: int = 28, w: int = 28) -> torch.Tensor:
    """Bars, boxes and a thin diagonal: simple strokes of the widths handwriting has at 28 px."""
    x = torch.zeros(n, 1, h, w)
    for i in range(n):
        k = i % 4
        if k == 0:
            x[i, 0, 6:22, w // 2 - 1 : w // 2 + 1] = 1.0  # a "1"
        elif k == 1:
            x[i, 0, 8:20, 8:10] = x[i, 0, 8:20, 18:20] = x[i, 0, 8:10, 8:20] = x[i, 0, 18:20, 8:20] = 1.0  # a box
        elif k == 2:
            idx = torch.arange(6, 22)
            x[i, 0, idx, idx + (w - 28) // 2] = 1.0  # a 1-px diagonal, the thinnest stroke
        else:
            x[i, 0, 13:15, 6 : w - 6] = 0.7  # a grey dash
    return x


@pytest.fixture(scope="session")
def chars74k_float(chars74k_train_zip) -> torch.Tensor:
    from charlab import data

    ds = data.load_source(str(chars74k_train_zip))
    idx = torch.arange(0, len(ds), max(1, len(ds) // 248))[:248]  # 4 writers' worth of every class
    return data.to_float(ds.images[idx])


@pytest.fixture(scope="session")
def synthetic_float() -> torch.Tensor:
    from charlab import data

    return data.to_float(data.load_source("synthetic:n=4").images)  # 248 images, 62 classes


def test_presets_registered_and_unknown_lists_valid():
    assert set(PRESETS) <= set(list_presets())
    for name in list_presets():
        cfg = get_preset(name)
        assert isinstance(cfg, AugmentConfig) and cfg.preset == name
    assert get_preset("none").is_identity()
    assert get_preset("report36").rotate == (-15.0, 25.0) and get_preset("report36").shear_x == (-0.3, 0.3)
    assert get_preset("chars74k_report").shear_x == (-0.1, 0.1)
    with pytest.raises(UnknownNameError, match="strong"):
        get_preset("nope")
    assert get_preset("strong") is not get_preset("strong")  # fresh objects: the app may edit them
    assert {op.p_field for op in OPS} == {f.name for f in dataclasses.fields(AugmentConfig) if f.name.endswith("_p")}


def test_none_is_exact_identity():
    x = torch.rand(8, 1, 28, 28)
    assert augment_batch(x, get_preset("none"), gen()) is x
    # strengths set but every probability 0, or probability 1 with zero ranges: still the input
    strong_off = dataclasses.replace(get_preset("strong"), **{op.p_field: 0.0 for op in OPS})
    assert torch.equal(augment_batch(x, strong_off, gen()), x)
    zero_range = AugmentConfig(rotate_p=1.0, shear_p=1.0, stroke_p=1.0, blur_p=1.0, erase_p=1.0)
    assert torch.equal(augment_batch(x, zero_range, gen()), x)
    y, params = augment_batch_with_params(x, get_preset("none"), gen())
    assert y is x and all(v is None for row in params for v in row.values())


@pytest.mark.parametrize("name", PRESETS[1:])
def test_deterministic_by_seed_and_independent_per_image(name):
    cfg = get_preset(name)
    x = ink_images(16)
    a, b = augment_batch(x, cfg, gen(1)), augment_batch(x, cfg, gen(1))
    assert torch.equal(a, b)
    assert not torch.equal(a, augment_batch(x, cfg, gen(2)))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    # identical inputs in one batch get their own parameters and so their own outputs
    same = x[1:2].expand(16, 1, 28, 28).contiguous()
    y, params = augment_batch_with_params(same, cfg, gen(3))
    distinct = {tuple(t.flatten().tolist()) for t in to_uint8(y)}
    assert len(distinct) >= 12
    assert len({repr(p) for p in params}) >= 12
    assert torch.equal(y, augment_batch(same, cfg, gen(3)))  # same draw with and without params


def test_probabilities_and_params_agree():
    cfg = AugmentConfig(rotate=(-10.0, 10.0), rotate_p=0.5, blur_sigma=(0.5, 1.0), blur_p=0.25)
    x = ink_images(400)
    y, params = augment_batch_with_params(x, cfg, gen(4))
    rot = [p["rotate"] for p in params]
    n_rot = sum(r is not None for r in rot)
    assert 160 < n_rot < 240
    assert all(-10 <= r <= 10 for r in rot if r is not None)
    assert 60 < sum(p["blur"] is not None for p in params) < 140
    untouched = [i for i, p in enumerate(params) if p["rotate"] is None and p["blur"] is None]
    assert untouched and torch.equal(y[untouched], x[untouched])  # images that drew nothing are exact
    assert all(p["shear_x"] is None and p["noise"] is None for p in params)


def test_turning_one_op_on_does_not_reroll_the_others():
    x = ink_images(32)
    base = AugmentConfig(rotate=(-20.0, 20.0), rotate_p=0.7)
    _, p1 = augment_batch_with_params(x, base, gen(5))
    _, p2 = augment_batch_with_params(x, dataclasses.replace(base, blur_sigma=(0.5, 1.0), blur_p=0.5), gen(5))
    assert [p["rotate"] for p in p1] == [p["rotate"] for p in p2]


def test_rotation_is_counter_clockwise_and_wide_images_keep_square_pixels():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 13:15, 20:22] = 1.0  # a dot right of the centre
    y = augment_batch(x, AugmentConfig(rotate=(90.0, 90.0), rotate_p=1.0), gen())
    rows, cols = (y[0, 0] > 0.5).nonzero().T
    assert set(rows.tolist()) == {6, 7} and set(cols.tolist()) == {13, 14}  # now above the centre
    wide = torch.zeros(1, 1, 28, 84)
    wide[0, 0, 10:18, 5:80] = 1.0  # a 75×8 bar
    y = augment_batch(wide, AugmentConfig(rotate=(90.0, 90.0), rotate_p=1.0), gen())
    assert y.shape == wide.shape
    rows, cols = (y[0, 0] > 0.5).nonzero().T
    assert int(cols.max() - cols.min()) + 1 == 8  # the bar's 8-pixel height is now its width


def test_shift_and_scale_conventions():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 12:16, 12:16] = 1.0
    y = augment_batch(x, AugmentConfig(shift=0.25, shift_p=1.0), gen())
    _, params = augment_batch_with_params(x, AugmentConfig(shift=0.25, shift_p=1.0), gen())
    dx, dy = params[0]["shift_x"] * 28, params[0]["shift_y"] * 28
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    cx = float((y[0, 0] * xs).sum() / y.sum())
    cy = float((y[0, 0] * ys).sum() / y.sum())
    assert cx == pytest.approx(13.5 + dx, abs=0.05) and cy == pytest.approx(13.5 + dy, abs=0.05)
    big = augment_batch(x, AugmentConfig(scale=(2.0, 2.0), scale_p=1.0), gen())
    assert float(big.sum()) == pytest.approx(4 * float(x.sum()), rel=0.05)  # zoom 2 -> 4× the area


def test_stroke_width_morphology_by_hand():
    x = torch.zeros(2, 1, 9, 9)
    x[:, 0, 4, 4] = 1.0
    y = augment_batch(x, AugmentConfig(stroke=(1.0, 1.0), stroke_p=1.0), gen())
    plus = torch.zeros(9, 9)
    plus[4, 3:6] = plus[3:6, 4] = 1.0  # cross-shaped element: one pixel per side, no corners
    assert torch.equal(y[0, 0], plus)
    half = augment_batch(x, AugmentConfig(stroke=(0.5, 0.5), stroke_p=1.0), gen())
    assert torch.allclose(half[0, 0], 0.5 * x[0, 0] + 0.5 * plus)
    bar = torch.zeros(1, 1, 9, 9)
    bar[0, 0, 2:7, 3:6] = 1.0  # 3 px wide
    thin = augment_batch(bar, AugmentConfig(stroke=(-1.0, -1.0), stroke_p=1.0), gen())
    assert thin[0, 0].nonzero().tolist() == [[3, 4], [4, 4], [5, 4]]


def test_blur_matches_a_gaussian_kernel():
    x = torch.zeros(1, 1, 21, 31)
    x[0, 0, 10, 15] = 1.0
    y = augment_batch(x, AugmentConfig(blur_sigma=(1.5, 1.5), blur_p=1.0), gen())
    x2 = x.expand(3, 1, 21, 31).clone()
    x2[2] = 0
    y2, params = augment_batch_with_params(x2, AugmentConfig(blur_sigma=(0.5, 2.0), blur_p=1.0), gen(1))
    assert torch.allclose(y2.sum((1, 2, 3)), torch.tensor([1.0, 1.0, 0.0]), atol=1e-5)  # mass kept per image
    assert params[0]["blur"] != params[1]["blur"]
    peak = y2[:2].amax((1, 2, 3))
    assert (peak[0] > peak[1]) == (params[0]["blur"] < params[1]["blur"])  # wider sigma, lower peak
    d = torch.arange(-5.0, 6.0)  # the kernel reaches 3 sigma, rounded up
    g = torch.exp(-(d**2) / (2 * 1.5**2))
    g = g / g.sum()
    expected = torch.zeros(21, 31)
    expected[5:16, 10:21] = g[:, None] * g[None, :]
    assert torch.allclose(y[0, 0], expected, atol=1e-6)


def test_erase_never_takes_most_of_the_ink():
    x = ink_images(64)
    cfg = AugmentConfig(erase_frac=(0.2, 0.4), erase_p=1.0)
    y, params = augment_batch_with_params(x, cfg, gen(6))
    kept = y.sum((1, 2, 3)) / x.sum((1, 2, 3))
    assert float(kept.min()) >= 0.6 - 1e-6
    erased = [i for i, p in enumerate(params) if p["erase"] is not None]
    assert erased and len(erased) < 64  # some rectangles hit too much ink and were not applied
    for i in erased:
        y0, x0, h, w = params[i]["erase"]
        assert float(y[i, 0, y0 : y0 + h, x0 : x0 + w].abs().sum()) == 0.0


def _check_ink(x: torch.Tensor, name: str, max_growth: float) -> None:
    y = augment_batch(x, get_preset(name), gen(7))
    ratio = y.sum((1, 2, 3)) / x.sum((1, 2, 3))
    peak = y.flatten(1).max(1).values
    # nothing emptied or pushed off the canvas, and no preset smears an image into a blob
    assert float(ratio.min()) > 0.35, f"{name}: an image kept only {float(ratio.min()):.2f} of its ink"
    assert float(ratio.max()) < max_growth, f"{name}: an image grew to {float(ratio.max()):.2f}× its ink"
    assert float(peak.min()) > 0.25, f"{name}: an image faded to peak {float(peak.min()):.2f}"
    assert 0.7 < float(ratio.mean()) < 1.6


@pytest.mark.parametrize("name", PRESETS)
def test_no_preset_empties_an_image_synthetic(name):
    _check_ink(ink_images(256), name, max_growth=4.5)  # a 1-px diagonal thickened by 1 px per side: ~3×


@pytest.mark.parametrize("name", PRESETS)
def test_no_preset_empties_an_image_synthetic_source(name, synthetic_float):
    _check_ink(synthetic_float, name, max_growth=3.5)


@pytest.mark.parametrize("name", PRESETS)
def test_no_preset_empties_an_image_chars74k(name, chars74k_float):
    _check_ink(chars74k_float, name, max_growth=3.0)


def test_validation_in_words():
    x = torch.rand(2, 1, 28, 28)
    for bad in (AugmentConfig(rotate_p=1.5), AugmentConfig(rotate=(10.0, -10.0), rotate_p=0.5),
                AugmentConfig(scale=(0.0, 1.0), scale_p=0.5), AugmentConfig(perspective=0.7, perspective_p=0.5),
                AugmentConfig(erase_frac=(0.1, 1.0), erase_p=0.5)):
        with pytest.raises(CharlabError):
            augment_batch(x, bad, gen())
    with pytest.raises(CharlabError, match="N×1×H×W"):
        augment_batch(torch.zeros(2, 28, 28), get_preset("light"), gen())
    with pytest.raises(CharlabError, match="float"):
        augment_batch(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), get_preset("light"), gen())


def test_lists_from_json_work():
    from charlab.config import from_dict, to_dict

    cfg = from_dict(AugmentConfig, to_dict(get_preset("strong")))
    x = ink_images(8)
    assert torch.equal(augment_batch(x, cfg, gen(8)), augment_batch(x, get_preset("strong"), gen(8)))


def test_preview_shapes_stability_and_position_independence():
    imgs = to_uint8(ink_images(6))
    cfg = get_preset("strong")
    p = preview(imgs, cfg, seed=3, k=5)
    assert p.images.shape == (6, 5, 1, 28, 28) and p.images.dtype == torch.uint8
    assert len(p.params) == 6 and all(len(row) == 5 for row in p.params)
    again = preview(imgs, cfg, seed=3, k=5)
    assert torch.equal(p.images, again.images) and p.params == again.params
    fewer = preview(imgs[:2], cfg, seed=3, k=5)
    assert torch.equal(fewer.images, p.images[:2])  # adding images does not re-roll the first ones
    more = preview(imgs[:2], cfg, seed=3, k=7)
    assert torch.equal(more.images[:, :5], p.images[:2]) and more.params[1][:5] == p.params[1]  # nor more variants
    assert not torch.equal(preview(imgs, cfg, seed=4, k=5).images, p.images)
    ident = preview(imgs, get_preset("none"), seed=0, k=2)
    assert torch.equal(ident.images[:, 0], imgs) and torch.equal(ident.images[:, 1], imgs)
    with pytest.raises(CharlabError):
        preview(imgs.float(), cfg, seed=0, k=2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_matches_device_and_shape():
    x = ink_images(32).cuda()
    for g in (gen(0), torch.Generator(device="cuda").manual_seed(0)):
        y = augment_batch(x, get_preset("strong"), g)
        assert y.device == x.device and y.shape == x.shape
        assert float(y.sum()) > 0
    cpu = augment_batch(x.cpu(), get_preset("report36"), gen(1))
    gpu = augment_batch(x, get_preset("report36"), gen(1)).cpu()
    assert torch.allclose(cpu, gpu, atol=1e-4)  # same draws from a CPU generator on either device
