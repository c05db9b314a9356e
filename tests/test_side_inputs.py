"""Side inputs (DataConfig.side_inputs, charlab.data.geometry): the ink's box on its page, kept
from before crop-to-ink and read by the model's head beside the image.

The toy task is the one crop-to-ink cannot solve: class `c` is a small ring, class `C` the same
ring big (its pen scaled with it), so after the crop both are the same picture and only the
side vector tells them apart."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from charlab.config import DataConfig, TrainConfig, get_preset
from charlab.data.preprocess import preprocess_image_side
from charlab.errors import CharlabError, DataError

import test_app_pages as app_tests
from test_app_pages import ok, open_app

lab, navigation_v2 = app_tests.lab, app_tests.navigation_v2  # the app tests' fixtures, for the Draw page test

PAGE = (90, 120)  # H, W of the toy pages (Chars74K's are 900×1200)
TWIN_PAGE = (360, 480)  # the c/C training pages: every ring above the model's 28 px
BOX = DataConfig(side_inputs="box")


def page_with_box(top: int, left: int, h: int, w: int, page=(300, 400)) -> Image.Image:
    im = Image.new("L", (page[1], page[0]), 255)  # dark ink on white paper, as a scan
    ImageDraw.Draw(im).rectangle((left, top, left + w - 1, top + h - 1), fill=0)
    return im


def test_box_geometry_of_hand_made_pages():
    # 300×400 page; box 60 tall, 40 wide, top-left at (30, 20): centre x 40, centre y 60
    _, s = preprocess_image_side(page_with_box(30, 20, 60, 40), BOX)
    np.testing.assert_allclose(s, [60 / 300, 40 / 300, (40 - 200) / 300, (60 - 150) / 300, np.log(60 / 40)],
                               atol=1e-6)
    big = preprocess_image_side(page_with_box(30, 20, 180, 120), BOX)[1]
    assert big[0] == pytest.approx(3 * s[0]) and big[1] == pytest.approx(3 * s[1])  # 3× the box, 3× the size
    assert big[4] == pytest.approx(s[4])  # same shape, same aspect
    right = preprocess_image_side(page_with_box(30, 340, 60, 40), BOX)[1]  # centre x 360
    assert s[2] < 0 < right[2] and right[2] == pytest.approx((360 - 200) / 300)
    np.testing.assert_allclose(right[[0, 1, 3, 4]], s[[0, 1, 3, 4]], atol=1e-6)  # only the position moved
    # the image the model sees is the same crop: the geometry is only in the side vector
    a_small, _ = preprocess_image_side(page_with_box(30, 20, 60, 40), BOX)
    a_right, _ = preprocess_image_side(page_with_box(30, 340, 60, 40), BOX)
    assert np.array_equal(a_small, a_right)
    assert preprocess_image_side(Image.new("L", (50, 40), 255), BOX)[1].tolist() == [0.0] * 5  # blank: zeros
    assert preprocess_image_side(page_with_box(30, 20, 60, 40), DataConfig())[1] is None  # off: no vector


def test_an_unknown_side_kind_lists_the_valid_ones():
    with pytest.raises(CharlabError, match="valid: box"):
        DataConfig(side_inputs="boxes").validate()


def ring(d: float, page=PAGE, centre=(0.5, 0.5), aspect: float = 1.0, pen: float = 1 / 8) -> Image.Image:
    """A ring d page heights tall, `aspect` times as wide, with a pen of d·pen: each size crops to the same picture."""
    h, w = page
    im = Image.new("L", (w, h), 255)
    ry, cx, cy = d * h / 2, centre[0] * w, centre[1] * h
    rx = ry * aspect
    ImageDraw.Draw(im).ellipse((cx - rx, cy - ry, cx + rx, cy + ry), outline=0, width=max(1, round(d * h * pen)))
    return im


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """A folder source of small rings (c) and big rings (C) at jittered positions and sizes, and two
    charnets trained on it for the same epochs: with and without side inputs."""
    from charlab.training import fit

    root = tmp_path_factory.mktemp("twins")
    rng = np.random.default_rng(0)
    for cls, lo, hi in (("c", 0.25, 0.4), ("C", 0.55, 0.8)):
        (root / "src" / cls).mkdir(parents=True)
        for i in range(60):
            d = rng.uniform(lo, hi)
            # pages big enough that every ring is shrunk to 28 px: on 90-px pages the small rings were
            # enlarged (blurred) and the big ones shrunk (sharp), a cue the image-only model learned
            ring(d, page=TWIN_PAGE, centre=(rng.uniform(0.35, 0.65), rng.uniform(0.45, 0.55)),
                 aspect=rng.uniform(0.7, 1.3), pen=rng.uniform(0.08, 0.16)).save(root / "src" / cls / f"{i}.png")
    runs = {}
    for name, side, drop in (("side", "box", 0.0), ("plain", None, 0.0), ("optional", "box", 0.3)):
        cfg = TrainConfig(data=DataConfig(source=str(root / "src"), val_fraction=0.25, side_inputs=side,
                                          side_dropout=drop),
                          augment=get_preset("none"), epochs=15, batch_size=8, lr=1e-2, patience=0, ema_decay=0.0)
        runs[name] = fit(cfg, root / name)
    return root, runs


def test_an_optional_side_vector_is_read_with_a_page_and_skipped_without_one(twins, tmp_path):
    """side_dropout: trained with 30% of the vectors hidden, the model still tells c from C by the
    page, and it also reads images that have no page (a CSV of crops), which the model whose side
    vector is required refuses with a clear message."""
    from charlab.data import load_source
    from charlab.predict import load_predictor

    _, runs = twins
    assert runs["optional"].history[-1]["val_acc"] >= 0.9, runs["optional"].history
    pred = load_predictor(runs["optional"].run_dir)
    assert pred.side_optional and not load_predictor(runs["side"].run_dir).side_optional
    assert [t[0][0] for t in pred.predict_images([ring(0.3), ring(0.7)], top_k=1)] == ["c", "C"]
    crops = [pred.prepare(ring(d)) for d in (0.3, 0.35, 0.6, 0.7)]  # 28×28, ink bright: no page left
    csv = tmp_path / "crops.csv"
    csv.write_text("".join(f"{c},{','.join(str(int(v)) for v in a.ravel())}\n"
                           for c, a in zip("ccCC", crops)))
    ds = load_source(str(csv), pred.data_config_for(str(csv)))
    assert ds.side is None and len(ds) == 4
    p = pred.predict_dataset(ds)
    assert p.shape == (4, 2) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert np.allclose(p, p[0], atol=0.05)  # the same picture four times: without the page, one answer
    with pytest.raises(DataError, match="no page"):
        load_source(str(csv), load_predictor(runs["side"].run_dir).data_config_for(str(csv)))
    # an upload's frame is no page (Predictor.explain(page=False), the Draw page's photos): the
    # optional model reads the pixels alone, a model that needs the vector still measures the frame
    assert pred.explain(ring(0.7), page=False).side is None and pred.explain(ring(0.7)).side is not None
    assert load_predictor(runs["side"].run_dir).explain(ring(0.7), page=False).side is not None
    # `predict --no-page` reads files so too: the pixels alone, as the Draw page's upload
    from charlab.cli.predict import predict_files

    ring(0.7).save(tmp_path / "big.png")
    framed = predict_files(pred, [str(tmp_path / "big.png")], top=2)[0]["top"]
    bare = predict_files(pred, [str(tmp_path / "big.png")], top=2, page=False)[0]["top"]
    assert framed[0]["label"] == "C" and bare != framed
    want = pred.explain(ring(0.7), top_k=2, page=False).top
    assert [t["label"] for t in bare] == [c for c, _ in want]
    np.testing.assert_allclose([t["prob"] for t in bare], [p for _, p in want], atol=1e-5)


def test_side_inputs_tell_apart_what_the_crop_makes_identical(twins):
    _, runs = twins
    side, plain = runs["side"].history[-1]["val_acc"], runs["plain"].history[-1]["val_acc"]
    assert side >= 0.9, runs["side"].history
    assert plain <= 0.75  # the same pictures: an image-only model guesses
    assert runs["side"].model.side_dim == 5 and runs["plain"].model.side_dim == 0


def test_an_image_only_body_starts_a_side_input_run_not_the_reverse(twins):
    """Synthetic pretraining has no page to measure, so the pretrained body must be able to start a
    side-input fine-tune: the body transfers, the side MLP and the wider head start new and learn."""
    from charlab.checkpoint import read_checkpoint_dict
    from charlab.errors import CheckpointError
    from charlab.training import fit

    root, runs = twins
    plain_ck = runs["plain"].run_dir / "best.pt"
    cfg = TrainConfig(data=DataConfig(source=str(root / "src"), val_fraction=0.25, side_inputs="box"),
                      augment=get_preset("none"), epochs=8, batch_size=8, lr=1e-2, patience=0, ema_decay=0.0,
                      init_from=str(plain_ck), freeze_body=True)
    tuned = fit(cfg, root / "tuned")
    assert any("body kept" in n for n in tuned.notes), tuned.notes
    assert tuned.model.side_dim == 5
    before, after = read_checkpoint_dict(plain_ck)["model"], tuned.model.state_dict()
    body = [k for k in before if not k.startswith("head.")]
    assert body and all(torch.equal(before[k], after[k]) for k in body)  # frozen: only the side MLP and head learned
    assert tuned.history[-1]["val_acc"] >= 0.9, tuned.history  # and they learned what the image cannot say
    from app_fixtures import make_checkpoint  # a 10-class image-only charnet: a new head for these 2 classes too

    ten = make_checkpoint(root / "ten.pt", model="charnet")
    other = fit(TrainConfig(data=DataConfig(source=str(root / "src"), val_fraction=0.25, side_inputs="box"),
                            augment=get_preset("none"), epochs=1, batch_size=8, init_from=str(ten)), root / "other")
    assert other.model.head.out_features == 2 and other.model.side_dim == 5
    back = TrainConfig(data=DataConfig(source=str(root / "src"), val_fraction=0.25), augment=get_preset("none"),
                       epochs=1, init_from=str(runs["side"].run_dir / "best.pt"))
    with pytest.raises(CheckpointError, match="same side vector"):
        fit(back, root / "back")


def test_a_side_input_model_saves_reloads_and_predicts_identically(twins):
    from charlab.checkpoint import load_checkpoint
    from charlab.predict import load_predictor, predictor_from_model

    root, runs = twins
    res = runs["side"]
    ck = load_checkpoint(res.run_dir / "best.pt")
    assert ck.config.data.side_inputs == "box" and ck.model.side_dim == 5  # the checkpoint alone rebuilds it
    pages = [ring(0.3), ring(0.7), ring(0.3, centre=(0.4, 0.5))]
    pred = load_predictor(res.run_dir)
    mem = predictor_from_model(res.model, res.classes, config=ck.config)
    got, want = pred.predict_images(pages, top_k=2), mem.predict_images(pages, top_k=2)
    assert [[c for c, _ in t] for t in got] == [[c for c, _ in t] for t in want]
    np.testing.assert_allclose([p for t in got for _, p in t], [p for t in want for _, p in t], atol=1e-6)
    assert [t[0][0] for t in got] == ["c", "C", "c"]  # small read as c, big as C, wherever it sits
    ex = pred.explain(ring(0.7))
    assert ex.top[0][0] == "C" and ex.side is not None and ex.side[0] == pytest.approx(0.7, abs=0.06)
    assert ex.cam.shape == ex.image.shape and np.isfinite(ex.cam).all()


def test_a_side_input_model_without_its_side_vector_is_a_clear_error(twins):
    from charlab.predict import load_predictor

    _, runs = twins
    pred = load_predictor(runs["side"].run_dir)
    with pytest.raises(DataError, match="size and position"):
        pred.probs(torch.zeros(2, 1, 28, 28))
    with pytest.raises(CharlabError, match="side inputs"):
        runs["side"].model(torch.zeros(2, 1, 28, 28))
    plain = load_predictor(runs["plain"].run_dir)
    assert plain.side_inputs is None
    assert plain.probs(torch.zeros(2, 1, 28, 28), side=torch.zeros(2, 5)).shape == (2, 2)  # ignored: image-only


def test_interpretation_and_saliency_of_a_side_input_model(twins):
    from charlab.data import load_splits
    from charlab.interpret import Interpretation
    from charlab.predict import load_predictor

    _, runs = twins
    pred = load_predictor(runs["side"].run_dir)
    val = load_splits(pred.data_config).val
    assert val.side is not None and val.side.shape == (len(val), 5)
    interp = Interpretation.from_predictor(pred, val, "val")
    assert interp.accuracy() >= 0.9
    m = interp.saliency(0)
    assert m.shape == (28, 28) and 0 <= m.min() and m.max() <= 1


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_of_a_side_input_model_takes_the_side_vector(twins, fmt):
    from charlab.export import compare, export_bytes, read_metadata, runner
    from charlab.predict import load_predictor

    root, runs = twins
    pred = load_predictor(runs["side"].run_dir)
    data = export_bytes(pred, fmt)
    x, side = pred.prepare_inputs([ring(0.3), ring(0.7), ring(0.5, centre=(0.3, 0.5))])
    got = compare(pred, runner(fmt, data), x, side=side)
    assert got["agreement"] == 1.0 and got["max_abs_diff"] < 1e-4
    path = root / f"m.{fmt}"
    path.write_bytes(data)
    assert '"kind": "box"' in read_metadata(path)["side_inputs"]


def test_a_source_without_pages_refuses_side_inputs():
    from charlab.data import load_source

    with pytest.raises(DataError, match="no page"):
        load_source("synthetic:n=2,test_n=1,classes=digits", DataConfig(side_inputs="box"))


def test_stroke_redrawings_measure_the_box_on_the_canvas(tmp_path):
    """A redrawing's page is the canvas (the page's height = the canvas's side, centre on centre),
    so its box in page heights is the original's (widened by the pen)."""
    from charlab.data.strokes import CANVAS_PX, PEN_PX, image_strokes, render_strokes

    page = ring(0.5, page=(900, 1200))
    _, orig = preprocess_image_side(page, BOX)
    _, drawn = preprocess_image_side(render_strokes(image_strokes(page), PEN_PX), BOX)
    pen = PEN_PX / CANVAS_PX
    assert drawn[0] == pytest.approx(orig[0] - 0.5 / 8 + pen, abs=0.03)  # skeleton + the pen's width
    assert drawn[2] == pytest.approx(orig[2], abs=0.02) and drawn[3] == pytest.approx(orig[3], abs=0.02)


def test_the_draw_page_gives_the_model_the_canvas_geometry(twins, lab, navigation_v2, tmp_path):
    """The same ring drawn small and big on the Draw canvas: the model gets two side vectors
    and reads c and C."""
    import shutil

    from app_fixtures import canvas_value

    root, runs = twins
    ckpt = tmp_path / "checkpoints" / "twins.pt"
    ckpt.parent.mkdir()
    shutil.copy(runs["side"].run_dir / "best.pt", ckpt)
    seen = {}
    for name, d in (("small", 0.3), ("big", 0.7)):
        circle = [(0.5 + d / 2 * np.cos(t), 0.5 + d / 2 * np.sin(t)) for t in np.linspace(0, 2 * np.pi, 40)]
        at = open_app(lab, "draw", sb_model=str(ckpt), checkpoints_dir=str(ckpt.parent))
        at.session_state["draw_canvas_0"] = canvas_value([circle], width=max(2, round(d * 280 / 8)))
        at.run()
        ok(at)
        seen[name] = ([m.value for m in at.markdown if "Looks like" in m.value],
                      [c.value for c in at.caption if "size and place on the canvas" in c.value])
    assert seen["small"][0][0].startswith("### Looks like **c"), seen
    assert seen["big"][0][0].startswith("### Looks like **C"), seen
    assert seen["small"][1] and seen["big"][1] and seen["small"][1] != seen["big"][1]
    assert "of the canvas's height" in seen["big"][1][0]


def test_the_errors_page_reads_a_side_input_model_on_its_own_data(twins, lab, navigation_v2, tmp_path):
    import shutil

    _, runs = twins
    ckpt = tmp_path / "checkpoints" / "twins.pt"
    ckpt.parent.mkdir()
    shutil.copy(runs["side"].run_dir / "best.pt", ckpt)
    at = open_app(lab, "errors", sb_model=str(ckpt), checkpoints_dir=str(ckpt.parent))
    ok(at)
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Accuracy"].rstrip("%")) >= 90, metrics  # the side vectors came with its data
    assert len(at.get("plotly_chart")) >= 2  # the confusion matrix and the saliency overlays (Grad-CAM with side)


def test_side_inputs_on_a_source_without_pages_are_refused_before_a_run_starts(tmp_path):
    from charlab.data.sources import check_source

    with pytest.raises(DataError, match="no page"):
        check_source("synthetic", side_inputs="box")
    folder = tmp_path / "src" / "c"
    folder.mkdir(parents=True)
    ring(0.3).save(folder / "0.png")
    check_source(str(tmp_path / "src"), side_inputs="box")  # a folder of files: its pages are measured
    check_source("synthetic")  # without side inputs, as before


def test_an_ensemble_file_of_side_input_models_and_a_mixed_one(twins, tmp_path):
    from charlab.checkpoint import save_ensemble
    from charlab.errors import CheckpointError
    from charlab.predict import load_predictor

    _, runs = twins
    side, plain = runs["side"].run_dir / "best.pt", runs["plain"].run_dir / "best.pt"
    save_ensemble(tmp_path / "ens.pt", [side, side])
    ens, one = load_predictor(tmp_path / "ens.pt"), load_predictor(side)
    assert ens.is_ensemble and ens.side_inputs == "box"
    pages = [ring(0.3), ring(0.7)]
    x, s = one.prepare_inputs(pages)
    np.testing.assert_allclose(ens.probs(x, side=s), one.probs(x, side=s), atol=1e-6)  # two copies: the same
    with pytest.raises(CheckpointError, match="side_inputs"):  # one reads the box, the other does not
        load_predictor(f"{side}+{plain}")


def test_the_pen_box_is_the_same_for_every_pen_width():
    """"pen_box" takes the ink's stroke width off the box: one drawing rendered with pens of 6 to
    40 canvas px keeps its size (the plain box grows by the pen)."""
    from charlab.data.strokes import render_strokes

    lines = [np.array([(60, 70), (60, 210), (180, 210)], float), np.array([(120, 90), (200, 140)], float)]
    plain = [preprocess_image_side(render_strokes(lines, pen), BOX)[1][0] for pen in (6, 20, 40)]
    pen_box = [preprocess_image_side(render_strokes(lines, pen), DataConfig(side_inputs="pen_box"))[1][0]
               for pen in (6, 20, 40)]
    assert plain[2] - plain[0] == pytest.approx(34 / 280, abs=0.01)  # the box grows by the pen's width
    np.testing.assert_allclose(pen_box, 140 / 280, atol=0.01)  # the centre line is 140 px tall
