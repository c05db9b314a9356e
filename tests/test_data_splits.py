"""Splits, class statistics and class naming, against hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from charlab.data import CharDataset, chars74k_class_name, class_stats, sort_classes
from charlab.data.classes import label_names
from charlab.data.splits import align_classes, stratified_split
from charlab.errors import DataError


def test_stratified_split_fractions_seed_and_single_image_classes():
    labels = np.array([0] * 20 + [1] * 10 + [2] * 1 + [3] * 2)
    tr, va, single = stratified_split(labels, 0.15, seed=0)
    assert single == [2]
    assert np.bincount(labels[va], minlength=4).tolist() == [3, 2, 0, 1]  # round(3.0), round(1.5)=2, -, max(1, 0)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(len(labels)))
    tr2, va2, _ = stratified_split(labels, 0.15, seed=0)
    assert va.tolist() == va2.tolist()
    assert stratified_split(labels, 0.15, seed=1)[1].tolist() != va.tolist()
    tr0, va0, single0 = stratified_split(labels, 0.0, seed=0)
    assert len(va0) == 0 and len(tr0) == len(labels) and single0 == []


def test_class_stats_hand_computed():
    st = class_stats([1, 4, 5, 10], ["a", "b", "c", "d"], threshold=5)
    assert (st.n_images, st.n_classes, st.min, st.median, st.max) == (20, 4, 1, 4.5, 10)
    assert st.imbalance_ratio == 10.0 and st.smallest == ["a"] and st.below_threshold == ["a", "b"]
    assert st.table["share"].tolist() == [0.05, 0.2, 0.25, 0.5]
    assert st.table["below_median"].tolist() == [True, True, False, False]
    assert st.table["deficit"].tolist() == [3.5, 0.5, 0.0, 0.0]
    assert list(st.table.columns) == ["class", "count", "share", "below_median", "deficit"]
    zero = class_stats([0, 3], ["x", "y"])
    assert zero.imbalance_ratio == float("inf") and zero.to_dict()["imbalance_ratio"] is None
    assert class_stats([], []).n_classes == 0


def test_class_names_and_order():
    assert [chars74k_class_name(f"Sample{i:03d}") for i in (1, 10, 11, 36, 37, 62)] == ["0", "9", "A", "Z", "a", "z"]
    assert chars74k_class_name("Sample063") == "Sample063" and chars74k_class_name("cat") == "cat"
    assert sort_classes(["b", "A", "cat", "class10", "2", "class9", "a", "B"]) == \
        ["2", "A", "B", "a", "b", "cat", "class9", "class10"]
    assert label_names([0, 9]) == {0: "0", 9: "9"}
    assert label_names([0, 25]) == {0: "A", 25: "Z"}
    assert label_names([10, 35])[35] == "Z" and label_names([61])[61] == "z" and label_names([99]) == {99: "99"}


def _ds(classes, labels):
    n = len(labels)
    return CharDataset(torch.zeros(n, 1, 4, 4, dtype=torch.uint8), torch.tensor(labels, dtype=torch.int64), classes,
                       source="t")


def test_align_classes_by_name():
    test = _ds(["B", "D"], [0, 1, 1])
    aligned = align_classes(test, ["A", "B", "C", "D"])
    assert aligned.classes == ["A", "B", "C", "D"] and aligned.labels.tolist() == [1, 3, 3]
    with pytest.raises(DataError, match="'E'"):
        align_classes(_ds(["A", "E"], [0, 1]), ["A", "B"])
