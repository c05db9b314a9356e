"""Label-issue suspects: confident learning by hand, the pair summary, and a real Chars74K
subset with two classes' labels partly swapped."""
import json

from pathlib import Path

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
    assert not r.in_sample and "out-of-fold" in r.note and "WARNING" not in r.note
    assert r.accuracy == pytest.approx(6 / 8)  # argmax = given for all but samples 2 and 5


def test_a_weak_model_is_warned_about():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4) * 50, size=100)  # near-uniform: an untrained model
    r = find_suspects(probs, rng.integers(0, 4, 100), list("abcd"))
    assert r.accuracy < 0.5 and "WARNING" in r.note


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


# --- real data: Chars74K digits with two classes' labels partly swapped ----------------

@pytest.mark.slow  # ~15-20 s on 2 idle cores (three lenet fits of 12 epochs on ~240 images)
def test_chars74k_swap_is_found_out_of_fold(chars74k_train_zip):
    import torch

    from charlab.config import DataConfig, ModelConfig, TrainConfig
    from charlab.augment import get_preset
    from charlab.data import CharDataset, load_source
    from charlab.suspects import out_of_fold_probs

    full = load_source(str(chars74k_train_zip), DataConfig(image_size=28))
    keep = np.flatnonzero(full.labels.numpy() < 10)  # the digits 0-9, 40 writers each
    digits = CharDataset(images=full.images[keep], labels=full.labels[keep].clone(), classes=full.classes[:10],
                         paths=[full.paths[i] for i in keep], source=full.source)
    assert digits.classes == list("0123456789") and len(digits) == 400
    # a quarter of the 3s are labelled 7 and a quarter of the 7s labelled 3
    rng = np.random.default_rng(0)
    labels = digits.labels.numpy()
    threes = rng.choice(np.flatnonzero(labels == 3), 10, replace=False)
    sevens = rng.choice(np.flatnonzero(labels == 7), 10, replace=False)
    given = labels.copy()
    given[threes], given[sevens] = 7, 3
    digits.labels = torch.from_numpy(given)
    swapped = np.r_[threes, sevens]

    cfg = TrainConfig(data=DataConfig(image_size=28), model=ModelConfig(name="lenet"), augment=get_preset("light"),
                      epochs=12, batch_size=32, patience=0, device="cpu")
    calls = []
    probs = out_of_fold_probs(cfg, digits, folds=3, progress=lambda d, t, m: calls.append((d, t)))
    assert probs.shape == (400, 10) and np.allclose(probs.sum(1), 1, atol=1e-4)
    assert calls[-1][0] == calls[-1][1]  # progress reached the end
    r = find_suspects(probs, given, digits.classes, paths=digits.paths, in_sample=False)

    top = r.pairs.iloc[0]
    assert {top["given"], top["likely"]} == {"3", "7"}, r.pairs.head()  # the swap is the top line...
    assert top["count"] >= 10 and top["likely_to_given"] >= 3  # ...with both of its directions
    assert top["count"] >= 3 * max(r.pairs["count"].iloc[1:].max() if len(r.pairs) > 1 else 0, 1)  # and it dominates
    found = np.isin(r.suspects["index"], swapped)
    assert found.mean() >= 0.6, r.suspects.head(20)  # most suspects are swapped samples (0.68-0.93 seen)
    assert np.isin(swapped, r.suspects["index"]).mean() >= 0.5  # and most swapped samples are suspects
    zip_part = r.suspects["path"].iloc[0].split("!/")[0]
    assert Path(zip_part).resolve() == Path(chars74k_train_zip).resolve()
    assert 0.02 < r.share < 0.2  # truth: 20 / 400 = 0.05


def test_suspects_cli_json(tmp_path, capsys):
    """Three rings filed under bar/ in a folder source: the CLI trains 2 out-of-fold lenets and
    puts them first."""
    from test_predict import SHAPES, draw_shape

    from charlab.__main__ import main

    rng = np.random.default_rng(0)
    src = tmp_path / "shapes"
    misfiled = []
    for kind in SHAPES:
        (src / kind).mkdir(parents=True)
        for i in range(24):
            folder = "bar" if kind == "ring" and i < 3 else kind
            path = src / folder / f"{kind}{i}.png"
            draw_shape(kind, rng).save(path)
            if folder != kind:
                misfiled.append(str(path))
    code = main(["suspects", "--source", str(src), "--folds", "2", "--model", "lenet", "--epochs", "16",
                 "--batch-size", "16", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["in_sample"] is False and 0 < out["share"] < 0.3
    assert set(out) >= {"suspects", "pairs", "share", "in_sample"}
    assert all(set(s) >= {"path", "given", "likely", "score"} for s in out["suspects"])
    assert all(set(p) >= {"given", "likely", "count"} for p in out["pairs"])
    top = [s["path"].split("!/")[-1] for s in out["suspects"][:3]]
    assert len(set(top) & set(misfiled)) >= 2, out["suspects"][:5]
    assert out["pairs"][0]["given"] == "bar" and out["pairs"][0]["likely"] == "ring"
