"""The shipped models: small, self-contained, and they read real handwriting, as ink and as canvas strokes.

The bounds are the figures measured on the Chars74K test split (BENCHMARKS.md, "Images and canvas
strokes") less 3 points: a regression of that size fails, the run-to-run noise of one model does not.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from charlab.__main__ import main
from charlab.checkpoint import load_checkpoint

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
DEFAULT = CHECKPOINTS / "default.pt"
SYNTHETIC = CHECKPOINTS / "synthetic.pt"

# measured on testPart1 (930 images) and on its stroke redrawing (every 3rd image: 310, pen 20)
DEFAULT_TEST_TOP1 = 0.897  # BENCHMARKS.md, "Images and canvas strokes"
DEFAULT_STROKES_TOP1 = 0.903  # the 310-image subset below (0.882 on all 930; stroke set version 2)
DEFAULT_PAGELESS_TOP1 = 0.829  # checkpoints/README.md: the synthetic glyphs (test split), no page
SYNTHETIC_TEST_TOP1 = 0.748  # BENCHMARKS.md, "Synthetic data" (a rerun of its recipe gave 0.735)


def _eval(capsys, ref: Path, source: Path) -> dict:
    assert main(["eval", "--run", str(ref), "--source", str(source), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_both_checkpoints_are_small_and_rebuild_their_models_alone():
    assert DEFAULT.stat().st_size + SYNTHETIC.stat().st_size < 5 * 1024 * 1024
    syn = load_checkpoint(SYNTHETIC)
    assert syn.config.data.source.startswith("synthetic")  # trained on the embedded data only
    ck = load_checkpoint(DEFAULT)
    assert Path(ck.config.data.source).name == "trainPart1.zip"  # Chars74K's training split, never its test split
    assert ck.config.data.strokes > 0  # it also learned the Draw canvas's pen strokes
    assert ck.config.data.side_inputs == "pen_box" and ck.config.data.side_dropout > 0  # the box, optional
    for c in (syn, ck):
        assert len(c.classes) == 62 and c.classes[:3] == ["0", "1", "2"]


def test_default_reads_the_chars74k_test_images(chars74k_train_zip, capsys):
    report = _eval(capsys, DEFAULT, chars74k_train_zip)  # a train zip evaluates on its sibling test zip
    assert report["n"] == 930
    assert report["accuracy"] >= DEFAULT_TEST_TOP1 - 0.03


def test_default_reads_the_test_characters_drawn_as_canvas_strokes(chars74k_train_zip):
    from charlab.data import align_classes, load_source
    from charlab.data.strokes import PEN_PX, stroke_dataset
    from charlab.predict import load_predictor

    pred = load_predictor(DEFAULT)
    cfg = pred.data_config_for(str(chars74k_train_zip))
    test = align_classes(load_source(str(chars74k_train_zip), cfg, split="test"), pred.classes)
    test = test.subset(np.arange(0, len(test), 3))  # 310 of the 930, all 62 classes
    strokes = stroke_dataset(test, cfg, PEN_PX)
    acc = float((pred.predict_dataset(strokes).argmax(1) == strokes.labels.numpy()).mean())
    assert acc >= DEFAULT_STROKES_TOP1 - 0.03


def test_default_also_reads_images_without_a_page(capsys):
    """Its side vector is optional (side_dropout): the embedded synthetic glyphs have no page, and
    it reads them by their pixels alone instead of refusing them."""
    report = _eval(capsys, DEFAULT, "synthetic")
    assert report["n"] == 2480
    assert report["accuracy"] >= DEFAULT_PAGELESS_TOP1 - 0.03


def test_synthetic_to_real_on_the_chars74k_test_zip_given_directly(chars74k_test_zip, capsys):
    # `--source testPart1.zip` has no test part of its own: all of it is the test split.
    report = _eval(capsys, SYNTHETIC, chars74k_test_zip)
    assert report["n"] == 930
    assert report["accuracy"] >= SYNTHETIC_TEST_TOP1 - 0.03


def test_the_default_carries_its_look_alike_groups_and_store_writes_them(tmp_path):
    from app_fixtures import make_checkpoint
    from charlab.lookalike import store
    from charlab.predict import load_predictor

    # shipped: the Draw page's first stroke reads them from the file instead of learning them,
    # learned from validation confusion (its recipe's models with a split held out), not from the
    # training images the final fit learned; reading the size, it keeps c/C and x/X apart
    shipped = load_predictor(DEFAULT).lookalikes
    groups = {"".join(sorted(g)) for g in shipped.groups}
    assert {"0Oo", "Ss", "Vv", "Ww", "Zz"} <= groups and "trained with it held out" in shipped.source
    # store() learns them from the model's own data, as a first use would, and writes them in
    ckpt = make_checkpoint(tmp_path / "m.pt")
    assert load_predictor(str(ckpt)).lookalikes is None
    la = store(ckpt)
    again = load_predictor(str(ckpt)).lookalikes
    assert again is not None and again.groups == la.groups and "learned" in again.source
    # ... or, for a final fit, from another model's validation confusion (learn_from): those groups,
    # said so in the file; a model of other classes is refused before anything is written
    other = make_checkpoint(tmp_path / "o.pt", model="lenet")
    before = other.read_bytes()
    from_other = store(other, learn_from=str(ckpt))
    assert from_other.groups == la.groups and "trained with it held out" in from_other.source
    assert load_predictor(str(other)).lookalikes.source == from_other.source
    letters = make_checkpoint(tmp_path / "l.pt", classes="ABCDEFGHIJ")
    from charlab.errors import CheckpointError

    with pytest.raises(CheckpointError, match="other classes"):
        store(letters, learn_from=str(ckpt))
    assert before != other.read_bytes() and load_predictor(str(letters)).lookalikes is None
