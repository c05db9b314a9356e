"""Real images redrawn as Draw-canvas pen strokes: thinning, tracing, placement, rendering, the
training option and stroke-width normalisation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from charlab.config import DataConfig
from charlab.data import preprocess_image
from charlab.data.strokes import CANVAS_PX, PEN_PX, image_strokes, normalise_width, render_strokes, thin, trace
from charlab.errors import CharlabError


def _page(draw, size=(1200, 900), width=14) -> Image.Image:
    """A white 'page' with black ink drawn by `draw(ImageDraw, width)`, like a Chars74K scan."""
    im = Image.new("RGB", size, "white")
    draw(ImageDraw.Draw(im), width)
    return im


def _iou(a: np.ndarray, b: np.ndarray, level: int = 80) -> float:
    a, b = a > level, b > level
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_thinning_a_thick_bar_leaves_its_one_pixel_midline():
    mask = np.zeros((40, 60), bool)
    mask[15:24, 5:55] = True  # a 9-pixel-thick horizontal bar
    skel = thin(mask)
    assert skel.sum() > 35 and not (skel & ~mask).any()  # long, and inside the ink
    cols = skel[:, 10:50]
    assert (cols.sum(0) == 1).all()  # one pixel thick along the bar
    assert set(np.nonzero(cols)[0]) <= {18, 19, 20}  # on the midline (rows 15..23)


def test_tracing_splits_at_junctions_keeps_loops_closed_and_dots():
    t = np.zeros((30, 30), bool)
    t[5, 5:25] = True  # the bar of a T
    t[5:25, 15] = True  # its stem
    lines = trace(t)
    assert len(lines) == 3  # left arm, right arm, stem: split at the junction (15, 5)
    assert all(any(tuple(p) == (15.0, 5.0) for p in ln[[0, -1]]) for ln in lines)
    ring = np.zeros((20, 20), bool)
    ring[5, 5:15] = ring[14, 5:15] = ring[5:15, 5] = ring[5:15, 14] = True
    (loop,) = trace(ring)
    assert tuple(loop[0]) == tuple(loop[-1]) and len(loop) == 37  # 36 pixels, closed
    dot = np.zeros((5, 5), bool)
    dot[2, 3] = True
    (single,) = trace(dot)
    assert single.tolist() == [[3.0, 2.0]]  # (x, y)


def test_a_branch_inside_the_ink_disk_of_its_junction_is_a_spur_a_longer_one_a_stroke():
    skel = np.zeros((40, 40), bool)
    skel[20, 5:35] = True  # a bar's midline, ink radius 10 along it
    skel[17:20, 12] = True  # a 3-px branch ending where the ink is 5 px deep: inside the junction's disk
    skel[8:20, 28] = True  # a 12-px arm: it reaches beyond that disk, so the writer drew it
    radius = np.where(skel, 10.0, 0.0)
    radius[17, 12] = radius[8, 28] = 5.0
    kept = trace(skel, radius=radius)
    ends = {tuple(p) for ln in kept for p in ln[[0, -1]]}
    assert (28.0, 8.0) in ends and (12.0, 17.0) not in ends
    assert len(trace(skel)) == len(kept) + 1  # without the radius every branch is kept


def test_the_short_arms_of_a_bold_t_survive_the_redrawing():
    # Thinning shortens every branch by the ink's radius: a 60-px arm of 40-px ink leaves a
    # 40-px skeleton branch, which a length rule (stroke set version 1) dropped, turning t into l.
    page = _page(lambda d, w: (d.line([(600, 250), (600, 650)], fill="black", width=w),
                               d.line([(540, 380), (660, 380)], fill="black", width=w)), width=40)
    lines = image_strokes(page)
    assert len(lines) == 4  # stem above and below the bar, left and right arm
    bar = 120 * CANVAS_PX / 900  # the ink's bar, in canvas px
    assert bar - 2 * 20 * CANVAS_PX / 900 - 1 <= np.ptp(np.concatenate(lines)[:, 0]) <= bar  # less a radius each end


def test_a_diagonal_staircase_traces_as_one_stroke():
    s = np.zeros((20, 20), bool)
    for i in range(15):
        s[2 + i, 2 + i] = s[2 + i, 3 + i] = True  # a 2-wide staircase: 8-connected junk junctions
    assert len(trace(thin(s))) == 1


def test_image_strokes_are_canvas_polylines_that_redraw_the_character():
    # An X on a 1200×900 page, drawn with the page-sized equivalent of the canvas's default pen
    # (20 canvas px = 64 page px): its redrawing must then look like the original.
    page = _page(lambda d, w: (d.line([(450, 250), (750, 650)], fill="black", width=w),
                               d.line([(750, 250), (450, 650)], fill="black", width=w)), width=64)
    lines = image_strokes(page)
    pts = np.concatenate(lines)
    assert 2 <= len(lines) <= 5  # the two strokes, split where they cross
    assert pts.min() >= 20 - 1e-6 and pts.max() <= CANVAS_PX - 20 + 1e-6  # half the widest pen inside the edges
    # the page's height is the canvas's side: 400 px of ink on a 900-px page is ~124 canvas px
    assert 100 <= np.ptp(pts[:, 1]) <= 130  # the skeleton: the ink less half a pen at each end
    canvas = render_strokes(lines, PEN_PX)
    assert canvas.size == (CANVAS_PX, CANVAS_PX) and canvas.mode == "RGB"
    drawn = np.asarray(canvas)[..., 0]
    assert drawn[140, 140] == 255 and drawn[5, 5] == 0  # the crossing is inked, the corner is not
    cfg = DataConfig()
    assert _iou(preprocess_image(canvas, cfg), preprocess_image(page, cfg)) > 0.7


def test_the_page_keeps_its_size_on_the_canvas_a_small_c_stays_small():
    def c(size):
        return lambda d, w: d.arc([600 - size, 450 - size, 600 + size, 450 + size], 40, 320, fill="black", width=w)
    small, big = (np.ptp(np.concatenate(image_strokes(_page(c(s))))[:, 1]) for s in (80, 160))
    assert 1.8 < big / small < 2.2


def test_strokes_near_the_edge_are_shifted_inside_not_clipped():
    page = _page(lambda d, w: d.line([(20, 300), (20, 600)], fill="black", width=w))  # at the page's left edge
    pts = np.concatenate(image_strokes(page))
    assert pts[:, 0].min() >= 20 - 1e-6


def test_a_blank_image_has_no_strokes():
    assert image_strokes(Image.new("L", (300, 200), 255)) == []
    assert np.asarray(render_strokes([])).max() == 0


def test_stroke_width_normalisation_makes_thin_and_thick_pens_alike():
    lines = [np.array([[80.0, 60.0], [200.0, 220.0]]), np.array([[200.0, 60.0], [80.0, 220.0]])]
    thin_pen, thick_pen = (render_strokes(lines, p) for p in (8, 34))
    raw = DataConfig()
    norm = DataConfig(stroke_norm=0.08)
    assert _iou(preprocess_image(thin_pen, raw), preprocess_image(thick_pen, raw)) < 0.5
    assert _iou(preprocess_image(thin_pen, norm), preprocess_image(thick_pen, norm)) > 0.75
    box = normalise_width(Image.new("L", (50, 50), 0), 0.1)
    assert np.asarray(box).max() == 0  # nothing drawn stays nothing


@pytest.mark.parametrize("field,value", [("strokes", -1), ("strokes", 9), ("stroke_pens", (30.0, 10.0)),
                                         ("stroke_norm", 0.6)])
def test_bad_stroke_options_are_refused_in_words(field, value):
    cfg = DataConfig(**{field: value})
    with pytest.raises(CharlabError, match=field):
        cfg.validate()


def test_strokes_option_adds_redrawings_to_the_training_split_only(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARLAB_CACHE_DIR", str(tmp_path / "cache"))
    from charlab.data import load_splits

    root = tmp_path / "data"
    shapes = {"L": [(40, 20), (40, 80), (80, 80)], "V": [(30, 20), (60, 80), (90, 20)]}
    for label, pts in shapes.items():
        (root / label).mkdir(parents=True)
        for i in range(5):
            im = Image.new("L", (120, 100), 255)
            ImageDraw.Draw(im).line([(x + i, y) for x, y in pts], fill=0, width=4 + i)
            im.save(root / label / f"{i}.png")
    base = DataConfig(source=str(root), val_fraction=0.2)
    plain = load_splits(base)
    cfg = DataConfig(source=str(root), val_fraction=0.2, strokes=2)
    drawn = load_splits(cfg)
    assert len(drawn.train) == 3 * len(plain.train) and len(drawn.val) == len(plain.val)
    assert torch.equal(drawn.val.images, plain.val.images)
    n = len(plain.train)
    assert torch.equal(drawn.train.images[:n], plain.train.images)
    assert torch.equal(drawn.train.labels[n:], plain.train.labels.repeat_interleave(2))
    assert len(set(drawn.train.hashes)) == len(drawn.train)  # a redrawing is other content than its original
    assert any("stroke redrawing" in note for note in drawn.notes)
    # A model trained with them is inspected on its training split as published: the Errors page and
    # `eval` load the data through data_config_for, which leaves the redrawings out (they cost minutes cold).
    from charlab.interpret import load_split
    from charlab.models import create_model
    from charlab.predict import predictor_from_model

    pred = predictor_from_model(create_model("kaggle_cnn", 2, in_chans=1, image_size=(28, 28)), ["L", "V"], cfg)
    assert pred.data_config_for().strokes == 0 and pred.data_config_for(str(root)).strokes == 0
    assert pred.data_config.strokes == 2  # the checkpoint's own record is kept
    train, _ = load_split(pred, None, "train")
    assert len(train) == len(plain.train) and torch.equal(train.images, plain.train.images)


def test_every_stroke_benchmark_candidate_builds_a_valid_config_from_the_default_recipe():
    from charlab.bench.strokes import CANDIDATES
    from charlab.models import count_parameters, create_model
    from charlab.recipes import get_recipe

    for name in CANDIDATES.names():
        cfg = CANDIDATES.get(name)(get_recipe("default"), {"pretrained": lambda: "synthetic-charnet.pt",
                                                           "teacher": lambda cfg: "teacher.pt"})
        cfg.validate()
        assert cfg.data.strokes in (0, 2) and (cfg.data.stroke_norm is not None) == (name == "norm")
        assert (cfg.teacher == "teacher.pt") == (name in ("distill", "side_distill"))
    wide = CANDIDATES.get("wide")(get_recipe("default"), {})
    narrow = get_recipe("default").model
    assert count_parameters(create_model("charnet", 62, **wide.model.kwargs)) > 2 * count_parameters(
        create_model(narrow.name, 62, **narrow.kwargs))
