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
