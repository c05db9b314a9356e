"""charlab.metrics against values computed by hand (micrograd-style: the reference is written out)."""
import math

import numpy as np
import pytest

from charlab import metrics

# A 3-class case used throughout.
#   y_true = 0 0 0 1 1 2
#   y_pred = 0 1 0 1 2 2
# confusion (rows true, cols predicted):
#   true 0: pred 0 twice (samples 0, 2), pred 1 once (sample 1)  -> [2, 1, 0]
#   true 1: pred 1 once (3), pred 2 once (4)                      -> [0, 1, 1]
#   true 2: pred 2 once (5)                                       -> [0, 0, 1]
Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 1, 0, 1, 2, 2]
CM = [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_confusion_matrix_by_hand():
    cm = metrics.confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.tolist() == CM
    assert cm.sum() == 6


def test_accuracy_by_hand():
    # diagonal 2 + 1 + 1 = 4 correct of 6
    assert metrics.accuracy(Y_TRUE, Y_PRED) == pytest.approx(4 / 6)
    assert math.isnan(metrics.accuracy([], []))


def test_precision_recall_f1_by_hand():
    precision, recall, f1, support = metrics.precision_recall_f1(np.array(CM))
    # precision = diagonal / column sum: 2/2, 1/(1+1), 1/(1+1)
    assert precision.tolist() == pytest.approx([1.0, 0.5, 0.5])
    # recall = diagonal / row sum: 2/3, 1/2, 1/1
    assert recall.tolist() == pytest.approx([2 / 3, 0.5, 1.0])
    # f1 = 2PR/(P+R): class 0: 2·1·(2/3)/(5/3) = 4/5; class 1: 2·.5·.5/1 = 1/2; class 2: 2·.5·1/1.5 = 2/3
    assert f1.tolist() == pytest.approx([0.8, 0.5, 2 / 3])
    assert support.tolist() == [3, 2, 1]


def test_macro_f1_by_hand():
    # (4/5 + 1/2 + 2/3) / 3 = (24 + 15 + 20) / 90 = 59/90
    assert metrics.macro_f1(Y_TRUE, Y_PRED, 3) == pytest.approx(59 / 90)
    # A 4th class that is never true nor predicted is left out, not counted as F1 = 0.
    assert metrics.macro_f1(Y_TRUE, Y_PRED, 4) == pytest.approx(59 / 90)


def test_macro_f1_counts_a_class_that_is_only_predicted():
    # y_true = 0 0, y_pred = 0 1 -> cm [[1, 1], [0, 0]]
    # class 0: P = 1/1, R = 1/2, F1 = 2/3; class 1: predicted once, never right -> P = 0, F1 = 0
    # macro = (2/3 + 0) / 2 = 1/3
    assert metrics.macro_f1([0, 0], [0, 1], 2) == pytest.approx(1 / 3)


def test_zero_division_gives_zero():
    # class 1 has no support and is never predicted: P, R, F1 all 0 (not nan)
    precision, recall, f1, support = metrics.precision_recall_f1(np.array([[3, 0], [0, 0]]))
    assert precision.tolist() == [1.0, 0.0] and recall.tolist() == [1.0, 0.0] and f1.tolist() == [1.0, 0.0]
    assert support.tolist() == [3, 0]


# probs (4 samples × 3 classes), no ties, labels y = 1 1 0 2
#   sample 0: [.5 .3 .2] ranking 0,1,2   true 1 -> rank 2
#   sample 1: [.1 .6 .3] ranking 1,2,0   true 1 -> rank 1
#   sample 2: [.2 .5 .3] ranking 1,2,0   true 0 -> rank 3
#   sample 3: [.6 .3 .1] ranking 0,1,2   true 2 -> rank 3
PROBS = [[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1]]
Y = [1, 1, 0, 2]


@pytest.mark.parametrize("k, expected", [(1, 1 / 4), (2, 2 / 4), (3, 4 / 4), (10, 4 / 4)])
def test_topk_accuracy_by_hand(k, expected):
    # top-1: only sample 1; top-2 adds sample 0; top-3 (= all classes) gets everything; k > C clamps to C
    assert metrics.topk_accuracy(np.array(PROBS), np.array(Y), k) == pytest.approx(expected)


def test_topk_1_equals_accuracy_of_argmax():
    rng = np.random.default_rng(0)
    p = rng.random((50, 7))
    y = rng.integers(0, 7, 50)
    assert metrics.topk_accuracy(p, y, 1) == pytest.approx(metrics.accuracy(y, p.argmax(1)))
