"""Label-issue suspects: confident learning by hand, the pair summary, and a real Chars74K
subset with two classes' labels partly swapped."""
import numpy as np
import pytest

from charlab.suspects import find_suspects, pair_summary, stratified_folds

CLASSES = ["a", "b", "c"]
LABELS = [0, 0, 0, 1, 1, 1, 2, 2]
PROBS = [
    [0.90, 0.05, 0.05],  # 0 a: fine
    [0.80, 0.10, 0.10],  # 1 a: fine
    [0.10, 0.80, 0.10],  # 2 a: looks like b
    [0.10, 0.80, 0.10],  # 3 b: fine
    [0.05, 0.90, 0.05],  # 4 b: fine
    [0.70, 0.20, 0.10],  # 5 b: looks like a
    [0.10, 0.10, 0.80],  # 6 c: fine
    [0.20, 0.20, 0.60],  # 7 c: unsure of everything
]


def test_confident_learning_by_hand():
    # thresholds = mean self-confidence: t_a = (.9+.8+.1)/3 = .6, t_b = (.8+.9+.2)/3 = .6333, t_c = (.8+.6)/2 = .7
    # sample 2: p_a .1 < .6, p_b .8 >= .633 -> confident b != a -> suspect, score .8 - .1 = .7
    # sample 5: p_a .7 >= .6, p_b .2 < .633 -> confident a != b -> suspect, score .7 - .2 = .5
    # sample 7: .2 < .6, .2 < .633, .6 < .7 -> no confident class -> neither suspect nor counted
    r = find_suspects(PROBS, LABELS, CLASSES, paths=[f"f{i}.png" for i in range(8)], in_sample=False)
    assert r.thresholds.tolist() == pytest.approx([0.6, 1.9 / 3, 0.7])
    assert r.suspects["index"].tolist() == [2, 5]
    assert r.suspects["path"].tolist() == ["f2.png", "f5.png"]
    assert r.suspects["given"].tolist() == ["a", "b"] and r.suspects["likely"].tolist() == ["b", "a"]
    assert r.suspects["score"].tolist() == pytest.approx([0.7, 0.5])
    # confident joint: given a -> [2, 1, 0], given b -> [1, 2, 0], given c -> [0, 0, 1] (sample 7 left out);
    # calibrated to the row counts 3, 3, 2: row c becomes [0, 0, 2]; off-diagonal 1 + 1 = 2 of 8 -> share .25
    assert r.share == pytest.approx(0.25)
    # a->b and b->a are one line
    assert r.pairs.to_dict("records") == [{"given": "a", "likely": "b", "count": 2, "given_to_likely": 1,
                                           "likely_to_given": 1}]
    assert not r.in_sample and "out-of-fold" in r.note


def test_in_sample_is_said():
    r = find_suspects(PROBS, LABELS, CLASSES, in_sample=True)
    assert r.in_sample and "IN-SAMPLE" in r.note and "understate" in r.note
    d = r.to_dict()
    assert d["in_sample"] is True and d["share"] == pytest.approx(0.25)
    assert [s["path"] for s in d["suspects"]] == ["#2", "#5"]


def test_pair_summary_reads_in_dominant_direction():
    # given c -> likely a three times, given a -> likely c once, given b -> likely a twice
    given = np.array([2, 2, 2, 0, 1, 1])
    likely = np.array([0, 0, 0, 2, 0, 0])
    df = pair_summary(given, likely, CLASSES)
    assert df.to_dict("records") == [
        {"given": "c", "likely": "a", "count": 4, "given_to_likely": 3, "likely_to_given": 1},
        {"given": "b", "likely": "a", "count": 2, "given_to_likely": 2, "likely_to_given": 0},
    ]


def test_stratified_folds_balance_each_class():
    labels = np.repeat(np.arange(4), [10, 7, 3, 1])
    f = stratified_folds(labels, 3, seed=1)
    for c in range(4):
        per_fold = np.bincount(f[labels == c], minlength=3)
        assert per_fold.max() - per_fold.min() <= 1
    assert (f == stratified_folds(labels, 3, seed=1)).all()


def test_synthetic_swap_is_the_top_pair():
    # 5 classes × 40 noisy-but-right probabilities; then 8 labels of class 1 become 3 and 8 of 3 become 1.
    rng = np.random.default_rng(0)
    y_true = np.repeat(np.arange(5), 40)
    logits = rng.normal(0, 1, (200, 5))
    logits[np.arange(200), y_true] += 3.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    given = y_true.copy()
    swapped = np.r_[np.flatnonzero(y_true == 1)[:8], np.flatnonzero(y_true == 3)[:8]]
    given[swapped[:8]], given[swapped[8:]] = 3, 1
    r = find_suspects(probs, given, list("vwxyz"))
    top = r.pairs.iloc[0]
    assert {top["given"], top["likely"]} == {"w", "y"} and top["count"] >= 10
    assert np.isin(swapped, r.suspects["index"]).mean() >= 0.7  # most swapped labels are found (12 of 16 here)
    assert np.isin(r.suspects["index"], swapped).mean() >= 0.9  # and the suspects are nearly all swapped ones
    assert 0.04 < r.share < 0.12  # truth: 16 / 200 = .08
