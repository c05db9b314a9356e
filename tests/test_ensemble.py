"""Ensembles ("runA+runB"): two runs of different architectures and seeds average their
probabilities wherever one checkpoint is accepted: eval (CLI, JSON), predict (CLI, the Draw
page's Predictor) and the Errors page's Interpretation. tests/test_predict.py checks the
averaging arithmetic on one run; here the members really differ."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from charlab.config import DataConfig, ModelConfig, TrainConfig
from charlab.errors import CheckpointError
from charlab.predict import load_predictor

CLASSES = ["a", "b", "c", "d"]


def _square_png(c: int, rng) -> Image.Image:
    """A dark square in quadrant c of a light 64×64 page (the preprocessing crops to it, so
    each square is drawn with a class-specific aspect: wide, tall, small ring, big ring)."""
    img = np.full((64, 64), 250, np.uint8)
    oy, ox = 8 + rng.integers(0, 6), 8 + rng.integers(0, 6)
    if c == 0:
        img[oy:oy + 8, ox:ox + 40] = 10
    elif c == 1:
        img[oy:oy + 40, ox:ox + 8] = 10
    else:
        s = 20 if c == 2 else 40
        img[oy:oy + s, ox:ox + s] = 10
        img[oy + 4:oy + s - 4, ox + 4:ox + s - 4] = 250
    return Image.fromarray(img)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    from charlab.training import fit

    root = tmp_path_factory.mktemp("ens")
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("test", 6)):
        for c, name in enumerate(CLASSES):
            d = root / "data" / split / name
            d.mkdir(parents=True)
            for i in range(n):
                _square_png(c, rng).save(d / f"{i}.png")
    runs = []
    for name, seed in (("charnet", 0), ("lenet", 1)):
        cfg = TrainConfig(data=DataConfig(source=str(root / "data" / "train"), test_source=str(root / "data" / "test"),
                                          val_fraction=0.2), model=ModelConfig(name=name, kwargs={"width": 8} if name == "charnet" else {}),
                          epochs=4, batch_size=16, patience=0, lr=3e-3, seed=seed)
        fit(cfg, root / name)
        runs.append(root / name)
    return runs, root / "data" / "test"


def test_ensemble_of_different_architectures_averages_probabilities(two_runs):
    (a, b), test_dir = two_runs
    ens = load_predictor(f"{a}+{b}")
    assert ens.is_ensemble and len(ens.models) == 2 and ens.classes == CLASSES
    images = [Image.open(p) for p in sorted(test_dir.glob("*/*.png"))[:8]]
    x = ens.prepare_batch(images)
    expected = (load_predictor(a).probs(x) + load_predictor(b).probs(x)) / 2
    assert np.allclose(ens.probs(x), expected, atol=1e-6)
    top = ens.predict_images(images[:2], top_k=2)  # the Draw page's call
    assert len(top) == 2 and abs(sum(p for _, p in ens.topk(ens.probs(x[:1]), 4)[0]) - 1) < 1e-5


def test_eval_and_predict_cli_take_an_ensemble(two_runs, capsys):
    from charlab.__main__ import main

    (a, b), test_dir = two_runs
    # no --source: the members' own data config, whose test split is the test folder
    assert main(["eval", "--run", f"{a}+{b}", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["checkpoints"]) == 2 and 0 <= report["accuracy"] <= 1
    # the reported accuracy is the averaged model's, computed here independently
    ens = load_predictor(f"{a}+{b}")
    files = sorted(test_dir.glob("*/*.png"))
    probs = ens.probs(ens.prepare_batch([Image.open(p) for p in files]))
    truth = np.array([CLASSES.index(p.parent.name) for p in files])
    assert report["accuracy"] == pytest.approx(float((probs.argmax(1) == truth).mean()), abs=1e-6)
    assert main(["predict", "--run", f"{a}+{b}", str(files[0]), "--top", "2"]) == 0
    assert capsys.readouterr().out.strip()


def test_errors_page_interpretation_of_an_ensemble(two_runs):
    from charlab.interpret import Interpretation, load_split

    (a, b), test_dir = two_runs
    ens = load_predictor(f"{a}+{b}")
    dataset, _ = load_split(ens, None, "test")
    interp = Interpretation.from_run(f"{a}+{b}", dataset, "test", predictor=ens)
    rep = interp.report(5)
    assert rep["errors"] == int(round((1 - rep["accuracy"]) * interp.n))


def test_ensemble_members_must_see_the_same_input(two_runs, tmp_path):
    from charlab.checkpoint import load_checkpoint, save_checkpoint

    (a, _), _ = two_runs
    ck = load_checkpoint(a / "best.pt")
    cfg = ck.config
    cfg.data.image_size = 32
    save_checkpoint(tmp_path / "other.pt", ck.model, cfg, ck.classes, (32, 32))
    with pytest.raises(CheckpointError, match="preprocess"):
        load_predictor(f"{a}+{tmp_path / 'other.pt'}")


def test_one_file_holding_an_ensemble_loads_as_that_ensemble(two_runs, tmp_path, capsys):
    from charlab.__main__ import main
    from charlab.checkpoint import load_checkpoint

    (a, b), test_dir = two_runs
    out = tmp_path / "ens.pt"
    assert main(["ensemble", "--out", str(out), str(a), str(b)]) == 0
    assert "ensemble of 2" in capsys.readouterr().out
    ens, pair = load_predictor(out), load_predictor(f"{a}+{b}")
    assert len(ens.models) == 2 and ens.paths == [out] and ens.classes == CLASSES
    images = [Image.open(p) for p in sorted(test_dir.glob("*/*.png"))]
    x = ens.prepare_batch(images)
    assert np.allclose(ens.probs(x), pair.probs(x), atol=1e-6)  # the lenet member really counts
    assert not np.allclose(ens.probs(x), load_predictor(a).probs(x), atol=1e-3)
    # a reader that knows one model per file gets the first member, intact
    first = load_checkpoint(out)
    assert first.config.model.name == "charnet" and np.allclose(
        load_predictor(a).probs(x), _softmax(first.model, x), atol=1e-6)
    # an ensemble file plus one more model: three members
    out3 = tmp_path / "ens3.pt"
    assert main(["ensemble", "--out", str(out3), str(out), str(a)]) == 0
    assert len(load_predictor(out3).models) == 3
    # the eval CLI reads the file's members too
    capsys.readouterr()
    assert main(["eval", "--run", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    truth = np.array([CLASSES.index(p.parent.name) for p in sorted(test_dir.glob("*/*.png"))])
    assert report["accuracy"] == pytest.approx(float((pair.probs(x).argmax(1) == truth).mean()), abs=1e-6)


def _softmax(model, x):
    import torch

    with torch.no_grad():
        return torch.softmax(model(x), 1).numpy()


def test_an_ensemble_of_mismatched_members_is_refused_before_anything_is_written(two_runs, tmp_path, capsys):
    from charlab.__main__ import main
    from charlab.checkpoint import load_checkpoint, save_checkpoint

    (a, _), _ = two_runs
    ck = load_checkpoint(a / "best.pt")
    save_checkpoint(tmp_path / "three.pt", ck.model, ck.config, ["a", "b", "x", "d"], ck.input_shape)
    out = tmp_path / "ens.pt"
    assert main(["ensemble", "--out", str(out), str(a), str(tmp_path / "three.pt")]) != 0
    assert "share their classes" in capsys.readouterr().err and not out.exists()
    assert main(["ensemble", "--out", str(out), str(a)]) != 0  # one model is no ensemble
    assert "at least 2" in capsys.readouterr().err and not out.exists()


def test_fine_tuning_from_an_ensemble_file_starts_from_its_first_member_and_says_so(two_runs, tmp_path):
    from charlab.checkpoint import load_checkpoint, save_ensemble
    from charlab.training import fit

    (a, b), _ = two_runs
    save_ensemble(tmp_path / "ens.pt", [a / "best.pt", b / "best.pt"])
    cfg = load_checkpoint(a / "best.pt").config
    cfg.init_from, cfg.epochs = str(tmp_path / "ens.pt"), 1
    res = fit(cfg, tmp_path / "tuned")
    assert any("ensemble of 2" in n and "first member" in n for n in res.notes)


def test_look_alike_groups_stored_in_an_ensemble_file_keep_its_members(two_runs, tmp_path):
    from charlab.checkpoint import save_ensemble
    from charlab.lookalike import store

    import shutil

    (a, b), _ = two_runs
    first = tmp_path / "a.pt"
    shutil.copy(a / "best.pt", first)
    store(first)
    assert load_predictor(first).lookalikes is not None
    out = tmp_path / "ens.pt"
    save_ensemble(out, [first, b / "best.pt"])
    assert load_predictor(out).lookalikes is None  # a member's own groups are not the ensemble's
    la = store(out)  # learned from the ensemble's predictions, written into the same file
    again = load_predictor(out)
    assert len(again.models) == 2 and again.lookalikes is not None and again.lookalikes.groups == la.groups
