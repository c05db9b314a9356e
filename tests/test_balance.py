"""Class balancing: every strategy's effective class distribution, hand-computed, on an imbalanced
synthetic set with a single-image class and an empty class."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from charlab.augment import get_preset
from charlab.balance import (BALANCE_STRATEGIES, class_weights, default_target, effective_counts,
                             effective_weights, epoch_indices, oversample, sampler_weights)
from charlab.data.dataset import CharDataset
from charlab.errors import CharlabError

COUNTS = np.array([1, 3, 8, 0, 20])  # class 0 has one image, class 3 none


def imbalanced() -> CharDataset:
    labels = torch.cat([torch.full((int(n),), c, dtype=torch.int64) for c, n in enumerate(COUNTS)])
    images = torch.zeros(len(labels), 1, 28, 28, dtype=torch.uint8)
    for i, c in enumerate(labels.tolist()):
        images[i, 0, 6:22, 4 + 4 * c : 7 + 4 * c] = 200 + i % 50  # a bar whose position says the class
    return CharDataset(images=images, labels=labels, classes=list("abcde"),
                       paths=[f"img{i}.png" for i in range(len(labels))], source="test",
                       info={"slot": torch.arange(len(labels)), "note": "kept"})


def test_strategies_listed_and_unknown_rejected():
    assert BALANCE_STRATEGIES.names() == ["none", "oversample", "sampler", "loss"]  # menu order: the default first
    for call in (lambda: effective_counts(COUNTS, "smote"), lambda: epoch_indices(torch.tensor([0, 1]), "smote", None),
                 lambda: effective_weights(COUNTS, "smote")):
        with pytest.raises(CharlabError, match="none, oversample, sampler, loss"):
            call()
    with pytest.raises(CharlabError, match="inverse, effective"):
        class_weights(COUNTS, "sqrt")


def test_effective_counts_by_hand():
    assert default_target(COUNTS) == 6  # median of the non-empty classes (1, 3, 8, 20) = 5.5 -> 6
    np.testing.assert_array_equal(effective_counts(COUNTS, "none"), [1, 3, 8, 0, 20])
    np.testing.assert_array_equal(effective_counts(COUNTS, "loss"), [1, 3, 8, 0, 20])
    np.testing.assert_array_equal(effective_counts(COUNTS, "oversample"), [6, 6, 8, 0, 20])
    np.testing.assert_array_equal(effective_counts(COUNTS, "oversample", target=10), [10, 10, 10, 0, 20])
    np.testing.assert_allclose(effective_counts(COUNTS, "sampler"), [8, 8, 8, 0, 8])  # 32 images / 4 classes
    with pytest.raises(CharlabError):
        effective_counts(COUNTS, "oversample", target=0)


def test_class_weights_by_hand():
    c = [1, 2, 4, 0]
    inv = class_weights(c, "inverse")  # 1, 1/2, 1/4 over mean 7/12
    np.testing.assert_allclose(inv.numpy(), [12 / 7, 6 / 7, 3 / 7, 0.0], rtol=1e-6)
    eff = class_weights(c, "effective", beta=0.5)  # (1-b)/(1-b^n): 1, 2/3, 8/15 over mean 11/15
    np.testing.assert_allclose(eff.numpy(), [15 / 11, 10 / 11, 8 / 11, 0.0], rtol=1e-6)
    np.testing.assert_allclose(class_weights(c, "effective", beta=0.0).numpy(), [1, 1, 1, 0])
    assert inv.dtype == torch.float32
    np.testing.assert_allclose(effective_weights(c, "loss", "inverse"), inv.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(effective_weights(c, "sampler"), [1, 1, 1, 0])
    # a single-image class in a weighted loss: finite, and the rare class dominates
    w = class_weights(COUNTS)
    loss = torch.nn.functional.cross_entropy(torch.zeros(2, 5), torch.tensor([0, 4]), weight=w)
    assert torch.isfinite(loss) and float(w[0]) == pytest.approx(20 * float(w[4]))


def test_oversample_matches_effective_counts():
    ds = imbalanced()
    out = oversample(ds, None, get_preset("light"), seed=0)
    np.testing.assert_array_equal(out.counts(), effective_counts(COUNTS, "oversample"))
    n = len(ds)
    assert torch.equal(out.images[:n], ds.images) and torch.equal(out.labels[:n], ds.labels)  # originals first
    assert out.paths[n].endswith("#oversample0") and out.paths[n].split("#")[0] in ds.paths
    assert out.info["oversample"] == {"target": 6, "added": len(out) - n, "preset": "light"}
    assert out.info["note"] == "kept" and len(out.info["slot"]) == len(out)
    # each copy is an augmented variant of an image of its own class
    for i in range(n, len(out)):
        src = int(out.info["slot"][i])
        assert int(ds.labels[src]) == int(out.labels[i])
    single = out.images[out.labels == 0]  # the single-image class: 5 copies of image 0
    assert len(single) == 6 and len({tuple(t.flatten().tolist()) for t in single}) >= 5
    assert all(int(t.sum()) > 0 for t in single)
    again = oversample(ds, None, get_preset("light"), seed=0)
    assert torch.equal(again.images, out.images)


def test_oversample_explicit_target_default_augmentation_and_noop():
    ds = imbalanced()
    out = oversample(ds, 10, None, seed=1)  # identity config -> the report36 rotation/shear copies
    np.testing.assert_array_equal(out.counts(), [10, 10, 10, 0, 20])
    assert out.info["oversample"]["preset"] == "report36"
    copies = out.images[len(ds):]
    assert not any(torch.equal(c, ds.images[int(s)]) for c, s in zip(copies, out.info["slot"][len(ds):]))
    assert oversample(ds, 1, None, seed=0) is ds  # nothing below the target


def test_sampler_sees_every_class_equally():
    ds = imbalanced()
    w = sampler_weights(ds.labels)
    np.testing.assert_allclose(w[:4].numpy(), [1, 1 / 3, 1 / 3, 1 / 3])
    g = torch.Generator().manual_seed(0)
    idx = torch.cat([epoch_indices(ds.labels, "sampler", g) for _ in range(200)])  # 200 epochs of 32
    assert len(idx) == 200 * len(ds)
    seen = np.bincount(ds.labels[idx].numpy(), minlength=5)
    expected = 200 * effective_counts(COUNTS, "sampler")  # 1,600 per non-empty class
    assert seen[3] == 0
    np.testing.assert_allclose(seen[[0, 1, 2, 4]], expected[[0, 1, 2, 4]], rtol=0.1)


@pytest.mark.parametrize("strategy", ["none", "oversample", "loss"])
def test_other_strategies_give_a_permutation(strategy):
    labels = imbalanced().labels
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    idx = epoch_indices(labels, strategy, g1)
    assert torch.equal(idx.sort().values, torch.arange(len(labels)))
    assert torch.equal(idx, epoch_indices(labels, strategy, g2))


@pytest.mark.parametrize("strategy", BALANCE_STRATEGIES.names())
def test_single_image_dataset_every_strategy(strategy):
    ds = imbalanced().subset([0])  # one class, one image
    counts = ds.counts()
    eff = effective_counts(counts, strategy)
    assert eff[0] == 1 and eff[1:].sum() == 0
    assert epoch_indices(ds.labels, strategy, torch.Generator().manual_seed(0)).tolist() == [0]
    assert np.isfinite(effective_weights(counts, strategy)).all()
    if strategy == "oversample":
        assert oversample(ds, None, None) is ds
        assert len(oversample(ds, 4, None)) == 4


def test_oversample_a_longtail_synthetic_source():
    from charlab import data

    ds = data.load_source("synthetic:classes=digits,n=12,profile=longtail")
    counts = ds.counts()
    assert counts.min() < counts.max()  # imbalanced
    out = oversample(ds, None, get_preset("report36"), seed=0)
    np.testing.assert_array_equal(out.counts(), effective_counts(counts, "oversample"))
    assert out.images.shape[1:] == ds.images.shape[1:] and out.images.dtype == torch.uint8
