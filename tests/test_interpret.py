"""Interpretation: metrics and example lists against hand-computed values, agreement of the
misclassified lists with the confusion matrix, the on-disk cache, and saliency for every model."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from charlab.data.dataset import CharDataset
from charlab.interpret import Interpretation, align_to_classes, medoid

CLASSES = ["a", "b", "c"]
TARGETS = [0, 0, 0, 1, 1, 2]
PROBS = [
    [0.7, 0.2, 0.1],  # 0: a -> a
    [0.3, 0.6, 0.1],  # 1: a -> b, loss -ln .3 = 1.2040
    [0.5, 0.4, 0.1],  # 2: a -> a, loss -ln .5 = 0.6931
    [0.2, 0.7, 0.1],  # 3: b -> b
    [0.1, 0.4, 0.5],  # 4: b -> c, loss -ln .4 = 0.9163
    [0.1, 0.1, 0.8],  # 5: c -> c
]


def _toy(paths=True) -> Interpretation:
    imgs = torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1).expand(6, 1, 4, 4).contiguous() * 40
    ds = CharDataset(images=imgs, labels=torch.tensor(TARGETS), classes=CLASSES,
                     paths=[f"img{i}.png" for i in range(6)] if paths else None)
    return Interpretation(probs=np.array(PROBS), targets=np.array(TARGETS), classes=CLASSES, split_name="test", dataset=ds)


def test_metrics_by_hand():
    it = _toy()
    # predictions 0 1 0 1 2 2 -> the confusion matrix of tests/test_metrics.py
    assert it.preds.tolist() == [0, 1, 0, 1, 2, 2]
    assert it.confusion_matrix().tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # row-normalised: [2/3, 1/3, 0], [0, 1/2, 1/2], [0, 0, 1]
    assert it.confusion_matrix("true") == pytest.approx(np.array([[2 / 3, 1 / 3, 0], [0, .5, .5], [0, 0, 1]]))
    assert it.accuracy() == pytest.approx(4 / 6)
    assert it.macro_f1() == pytest.approx(59 / 90)
    # top-2: every true class is within the two largest of its row
    assert it.topk_accuracy(2) == 1.0 and it.topk_accuracy(1) == pytest.approx(4 / 6)
    assert it.losses[[1, 2, 4]] == pytest.approx([-math.log(.3), -math.log(.5), -math.log(.4)])
    pc = it.per_class()
    assert pc["f1"].tolist() == pytest.approx([0.8, 0.5, 2 / 3]) and pc["support"].tolist() == [3, 2, 1]
    assert pc["f1"].mean() == pytest.approx(it.macro_f1())
    s = it.summary()
    assert s["n"] == 6 and s["errors"] == 2 and s["accuracy"] == pytest.approx(4 / 6)


def test_most_confused_top_losses_misclassified_by_hand():
    it = _toy()
    mc = it.most_confused()
    assert mc[["true", "predicted", "count"]].values.tolist() == [["a", "b", 1], ["b", "c", 1]]
    assert it.most_confused(min_count=2).empty
    tl = it.top_losses(3)
    assert tl["index"].tolist() == [1, 4, 2]  # losses 1.204 > 0.916 > 0.693
    assert it.top_losses(5, errors_only=True)["index"].tolist() == [1, 4]
    m = it.misclassified("a", "b")
    assert m["index"].tolist() == [1] and m["path"].tolist() == ["img1.png"]
    assert m.loc[0, "prob_pred"] == pytest.approx(.6) and m.loc[0, "prob_true"] == pytest.approx(.3)
    # the diagonal cell a->a: by loss 2 (.693) before 0 (.357); by confidence 0 (.7) before 2 (.5)
    assert it.misclassified(0, 0, sort="loss")["index"].tolist() == [2, 0]
    assert it.misclassified(0, 0, sort="confidence")["index"].tolist() == [0, 2]
    with pytest.raises(Exception, match="unknown class"):
        it.misclassified("zz", "a")


def test_misclassified_lists_agree_with_the_matrix():
    rng = np.random.default_rng(1)
    n, c = 300, 6
    targets = rng.integers(0, c, n)
    logits = rng.normal(0, 1, (n, c))
    logits[np.arange(n), targets] += 1.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    it = Interpretation(probs=probs, targets=targets, classes=[str(i) for i in range(c)])
    cm = it.confusion_matrix()
    seen = []
    for t in range(c):
        for p in range(c):
            df = it.misclassified(t, p)
            assert len(df) == cm[t, p]
            assert (targets[df["index"]] == t).all() and (probs[df["index"]].argmax(1) == p).all()
            assert df["loss"].is_monotonic_decreasing
            if t != p:
                seen += df["index"].tolist()
    assert sorted(seen) == np.flatnonzero(it.preds != targets).tolist()
    mc = it.most_confused()
    assert mc["count"].sum() == cm.sum() - np.trace(cm)
    assert all(cm[r.true_idx, r.pred_idx] == r.count for r in mc.itertuples())


def test_class_example_and_medoid():
    it = _toy()
    # class a: correct rows 0 (p .7) and 2 (p .5) -> row 0; class b: only row 3 is right
    assert (it.class_example("a") == it.image(0)).all()
    assert (it.class_example(1) == it.image(3)).all()
    # medoid: the middle one of three images on a line
    imgs = np.stack([np.full((2, 2), v, np.uint8) for v in (0, 100, 255)])
    assert medoid(imgs)[0, 0] == 100
    # a reference set without a model to score it: the medoid of the class
    ref = CharDataset(images=torch.from_numpy(imgs).unsqueeze(1), labels=torch.tensor([1, 1, 1]), classes=CLASSES)
    assert it.class_example("b", reference_dataset=ref)[0, 0] == 100
    assert it.class_example("c", reference_dataset=ref) is None


def test_align_to_classes_by_name():
    ds = CharDataset(images=torch.zeros(5, 1, 2, 2, dtype=torch.uint8), labels=torch.tensor([0, 1, 2, 1, 0]),
                     classes=["b", "z", "a"])
    keep, mapped, note = align_to_classes(ds, CLASSES)
    assert keep.tolist() == [0, 2, 4] and mapped.tolist() == [1, 0, 1]
    assert "z" in note and "3 of 5" in note
    with pytest.raises(Exception, match="share none"):
        align_to_classes(ds.subset([1, 3]), ["q"])


# --- checkpoints: the on-disk cache ----------------------------------------------------

def _save_lenet(path, seed: int, classes=CLASSES):
    from charlab.checkpoint import save_checkpoint
    from charlab.config import DataConfig, ModelConfig, TrainConfig
    from charlab.models import create_model

    torch.manual_seed(seed)
    model = create_model("lenet", num_classes=len(classes), image_size=28)
    cfg = TrainConfig(data=DataConfig(source="synthetic", image_size=28), model=ModelConfig(name="lenet"))
    save_checkpoint(path, model, cfg, classes, (28, 28), epoch=1)


def _random_split(n=24, seed=0) -> CharDataset:
    g = torch.Generator().manual_seed(seed)
    imgs = (torch.rand(n, 1, 28, 28, generator=g) * 255).to(torch.uint8)
    return CharDataset(images=imgs, labels=torch.arange(n) % 3, classes=CLASSES, paths=[f"r{i}" for i in range(n)])


def test_cache_hit_and_invalidation_when_the_checkpoint_changes(tmp_path):
    run = tmp_path / "run1"
    run.mkdir()
    (run / "config.json").write_text("{}")  # makes it a run directory: the cache goes inside it
    _save_lenet(run / "best.pt", seed=0)
    ds = _random_split()
    a = Interpretation.from_run(run, ds, "val")
    assert not a.from_cache
    files = list((run / "interpret").glob("*.npz"))
    assert len(files) == 1 and "val" in files[0].name
    b = Interpretation.from_run(str(run), ds, "val")
    assert b.from_cache and np.array_equal(a.probs, b.probs) and b.predictor is None  # no model loaded on a hit
    assert b.accuracy() == a.accuracy() and (b.image(3) == ds.images[3, 0].numpy()).all()

    _save_lenet(run / "best.pt", seed=1)  # retrained: same path, new weights
    c = Interpretation.from_run(run, ds, "val")
    assert not c.from_cache and not np.allclose(a.probs, c.probs)
    assert len(list((run / "interpret").glob("*.npz"))) == 1  # the stale entry was replaced, not kept
    # another split, or other data, is another entry
    Interpretation.from_run(run, _random_split(seed=5), "test")
    assert len(list((run / "interpret").glob("*.npz"))) == 2
    # a corrupt cache file is only a miss
    for f in (run / "interpret").glob("*.npz"):
        f.write_bytes(b"garbage")
    assert not Interpretation.from_run(run, ds, "val").from_cache


def test_loose_checkpoint_caches_under_cache_dir_and_maps_classes(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARLAB_CACHE_DIR", str(tmp_path / "cache"))
    ck = tmp_path / "model.pt"
    _save_lenet(ck, seed=0)
    # the data's classes are in another order and hold one the model does not know
    imgs = _random_split(8).images
    ds = CharDataset(images=imgs, labels=torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]), classes=["c", "zz", "a", "b"])
    it = Interpretation.from_run(ck, ds, "test")
    assert it.n == 6 and it.targets.tolist() == [2, 0, 1, 2, 0, 1]  # c->2, a->0, b->1; zz rows left out
    assert "zz" in it.notes[0]
    assert len(list((tmp_path / "cache" / "interpret").glob("*.npz"))) == 1
    again = Interpretation.from_run(ck, ds, "test")
    assert again.from_cache and again.targets.tolist() == it.targets.tolist() and again.notes == it.notes
    assert again.source_index.tolist() == [0, 2, 3, 4, 6, 7]
    # saliency and class examples load the model lazily after a cache hit
    sal = again.saliency(0)
    assert sal.shape == (28, 28) and again.predictor is not None
    ex = again.class_example("a", reference_dataset=_random_split(9))
    assert ex.shape == (28, 28) and ex.dtype == np.uint8


# --- saliency for every model in the zoo ------------------------------------------------

def _stroke_image(size=28) -> torch.Tensor:
    """A '7'-ish stroke, ink bright on dark, 1×1×S×S float in [0, 1]."""
    img = torch.zeros(size, size)
    img[6:8, 6:22] = 1.0
    for r in range(8, 23):
        c = 21 - (r - 8) // 2
        img[r, c - 1:c + 1] = 1.0
    return img.view(1, 1, size, size)


def _models():
    from charlab.models import list_models

    return list_models()


@pytest.mark.parametrize("name", _models())
def test_saliency_maps_for_every_model(name):
    from charlab.models import create_model
    from charlab.saliency import grad_cam, input_gradient

    torch.manual_seed(0)
    model = create_model(name, num_classes=5, image_size=28).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = _stroke_image()
    with torch.inference_mode():  # the app may call from inside inference mode
        cam = grad_cam(model, x)
        grad = input_gradient(model, x, class_idx=3)
    for m in (cam, grad):
        assert m.shape == (28, 28) and m.dtype == np.float32
        assert m.min() >= 0 and m.max() <= 1 and m.std() > 1e-4  # not constant
    cam2 = grad_cam(model, x, class_idx=2)
    assert cam2.shape == (28, 28)
    # nothing persistent changed: eval mode, no hooks, no .grad, same weights
    assert not model.training
    assert not model.cam_layer._forward_hooks
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# --- evaluation across datasets: the classes present, restriction, look-alikes ----------

def test_macro_f1_runs_over_the_classes_present_and_restriction_by_hand():
    """A 4-class model on data holding only a and b (a digit set read by a 62-class model, in small).
    Predictions into the absent classes c, d are errors of a or b but add no F1 term of their own."""
    classes = ["a", "b", "c", "d"]
    targets = [0, 0, 0, 1, 1, 1]
    probs = [[.9, .05, .03, .02],  # a -> a
             [.3, .1, .6, .0],     # a -> c (absent); restricted: a (.3 vs .1)
             [.1, .5, .4, .0],     # a -> b, stays b
             [.1, .8, .1, .0],     # b -> b
             [.05, .35, .0, .6],   # b -> d (absent); restricted: b
             [.6, .3, .1, .0]]     # b -> a, stays a
    it = Interpretation(probs=np.array(probs), targets=np.array(targets), classes=classes)
    assert it.preds.tolist() == [0, 2, 1, 1, 3, 0] and it.present().tolist() == [0, 1]
    # a: tp 1, predicted as a 2 (rows 0, 5), support 3 -> P 1/2, R 1/3, F1 0.4
    # b: tp 1, predicted as b 2 (rows 2, 3), support 3 -> P 1/2, R 1/3, F1 0.4
    assert it.macro_f1() == pytest.approx(0.4)  # not (0.4 + 0.4 + 0 + 0) / 4 = 0.2
    assert it.accuracy() == pytest.approx(2 / 6) and it.absent_predictions() == 2
    assert it.per_class()["class"].tolist() == ["a", "b"]
    assert it.per_class()["f1"].mean() == pytest.approx(it.macro_f1())
    r = it.restricted()
    assert r.preds.tolist() == [0, 0, 1, 1, 1, 0] and r.absent_predictions() == 0
    assert np.allclose(r.probs.sum(1), 1) and (r.probs[:, 2:] == 0).all()
    # a: tp 2 (rows 0, 1), predicted a 3 (0, 1, 5) -> P 2/3, R 2/3; b: tp 2 (3, 4), predicted b 3 -> same
    assert r.accuracy() == pytest.approx(4 / 6) and r.macro_f1() == pytest.approx(2 / 3)
    assert r.probs[1].tolist() == pytest.approx([.75, .25, 0, 0])


def test_lookalike_groups_are_learned_from_soft_confusion():
    from charlab import lookalike

    classes = ["0", "C", "O", "c", "o", "x"]
    rng = np.random.default_rng(0)
    rows, targets = [], []
    mates = {"C": "c", "c": "C", "O": "o", "o": "O", "0": "O"}
    for k, c in enumerate(classes):
        for _ in range(20):
            p = np.full(len(classes), 0.01)
            p[k] = 0.6 if c in mates else 0.95
            if c in mates:
                p[classes.index(mates[c])] = 0.35
            rows.append(p / p.sum())
            targets.append(k)
    la = lookalike.learn(np.array(rows), np.array(targets), classes)
    # c/C link both ways; 0 leans on O only one way, but (0.34 + 0.01) / 2 still passes 0.12
    assert la.groups == [["0", "O", "o"], ["C", "c"]]
    g = la.index(classes)
    assert g[classes.index("c")] == g[classes.index("C")] != g[classes.index("x")]
    # grouped accuracy: c read as C counts, x read as c does not
    t = [classes.index(c) for c in "cCxo"]
    p = [classes.index(c) for c in "CCc0"]
    assert lookalike.grouped_accuracy(t, p, classes, la.groups) == pytest.approx(3 / 4)
    assert lookalike.Lookalikes.from_dict(la.to_dict()).groups == la.groups


def test_grouped_top_names_twins_only_when_they_share_the_probability():
    from charlab import lookalike

    classes = ["C", "c", "x"]
    la = lookalike.Lookalikes(groups=[["C", "c"]], source="test")
    g = lookalike.grouped_top(np.array([.42, .51, .07]), classes, la)
    assert g.label == "c or C" and g.prob == pytest.approx(.93) and g.split == [("c", .51), ("C", .42)]
    lone = lookalike.grouped_top(np.array([.95, .03, .02]), classes, la)
    assert lone.label == "C" and lone.split == [("C", .95)]
    assert lookalike.grouped_top(np.array([.1, .1, .8]), classes, la).label == "x"


def test_twin_order_puts_case_twins_side_by_side():
    from charlab.data.classes import CHARS62
    from charlab.lookalike import twin_order

    order = [CHARS62[k] for k in twin_order(list(CHARS62))]
    assert "".join(order[:14]) == "0123456789AaBb" and order[-2:] == ["Z", "z"]


def test_fallback_groups_keep_only_the_models_classes():
    from charlab.lookalike import fallback

    la = fallback(list("0123456789"))
    assert la.groups == [] and "built-in" in la.source
    assert ["0", "O", "o"] in fallback(list("0Oo1Iil")).groups
