"""The synthetic source: determinism, class sets and counts, geometry, split independence, errors.

Loaders are called directly (no disk cache) with a few images per class; the whole file takes
a few seconds.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from charlab.config import DataConfig
from charlab.data import SOURCES, load_source
from charlab.data._glyphs import CLASSES_62, GLYPHS
from charlab.data.synthetic import class_counts, parse_options, synthetic_source
from charlab.errors import CharlabError


def load(arg: str, split: str = "train", **cfg):
    return synthetic_source(arg, DataConfig(**cfg), split, None)


@pytest.fixture(scope="module")
def digits():
    return load("classes=digits,n=12,test_n=12")


def test_registered():
    assert "synthetic" in SOURCES


def test_every_class_has_a_glyph_that_parses():
    assert sorted(GLYPHS) == sorted(CLASSES_62)
    ds = load("n=1")  # one image of each of the 62 classes, every allograph chosen at random
    assert ds.classes == CLASSES_62
    assert ds.counts().tolist() == [1] * 62


def test_deterministic_by_seed(digits):
    again = load("classes=digits,n=12,test_n=12")
    assert torch.equal(digits.images, again.images) and torch.equal(digits.labels, again.labels)
    assert not torch.equal(digits.images, load("classes=digits,n=12,seed=1").images)
    # DataConfig.seed is the default seed; seed= overrides it
    assert torch.equal(load("classes=digits,n=12", seed=1).images, load("classes=digits,n=12,seed=1").images)


def test_a_character_does_not_depend_on_the_class_set(digits):
    wide = load("classes=36,n=12")
    assert torch.equal(wide.images[wide.labels < 10], digits.images)


@pytest.mark.parametrize("name,expected", [("digits", CLASSES_62[:10]), ("upper", CLASSES_62[10:36]),
                                           ("lower", CLASSES_62[36:]), ("36", CLASSES_62[:36])])
def test_class_sets(name, expected):
    ds = load(f"classes={name},n=2")
    assert ds.classes == expected
    assert ds.counts().tolist() == [2] * len(expected)
    assert ds.images.shape == (2 * len(expected), 1, 28, 28) and ds.images.dtype == torch.uint8


def test_image_size_follows_config():
    assert load("classes=digits,n=1", image_size=64).images.shape == (10, 1, 64, 64)


def test_images_have_ink_and_are_centred(digits):
    imgs = digits.images[:, 0].numpy().astype(np.float64)  # N×S×S
    s = imgs.shape[-1]
    assert (imgs.max(axis=(1, 2)) == 255).all(), "every image has full-strength ink"
    for a in imgs:
        rows, cols = np.flatnonzero(a.max(1) > 50), np.flatnonzero(a.max(0) > 50)
        # the ink's box is centred (the longer side spans the image minus the margins)
        assert abs((rows[0] + rows[-1]) / 2 - (s - 1) / 2) <= 1.5
        assert abs((cols[0] + cols[-1]) / 2 - (s - 1) / 2) <= 1.5
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) >= s * 0.6
        assert a[0].max() == a[-1].max() == a[:, 0].max() == a[:, -1].max() == 0, "margin stays empty"


def test_samples_vary_within_a_class(digits):
    x = digits.images[digits.labels == 4].float()
    assert len({bytes(a.numpy().tobytes()) for a in x.to(torch.uint8)}) == len(x)
    assert (x - x.mean(0)).abs().mean() > 10  # not one template with a little noise
    assert len(set(digits.info["allograph"][digits.labels == 4].tolist())) > 1  # open and closed 4s


def test_test_split_never_repeats_a_train_image(digits):
    test = load("classes=digits,n=12,test_n=12", split="test")
    assert test.counts().tolist() == [12] * 10
    train = {a.numpy().tobytes() for a in digits.images}
    assert not any(a.numpy().tobytes() in train for a in test.images)
    assert test.paths[0] == "synthetic#test-0" and digits.paths[5] == "synthetic#5"


def test_longtail_counts():
    c = class_counts(36, 200, "longtail", seed=0)
    assert (c == 1).sum() == 1, "exactly one class with a single image"
    assert c.max() == 200 and (c == 200).sum() >= 3, "a few full classes"
    assert (c < 0.25 * 200).sum() >= 18, "many small classes"
    assert c.min() == 1 and (c[c != 1] >= 2).all()
    assert np.array_equal(c, class_counts(36, 200, "longtail", seed=0))
    assert not np.array_equal(c, class_counts(36, 200, "longtail", seed=1))
    ds = load("classes=36,n=20,profile=longtail,test_n=3")
    assert ds.counts().tolist() == class_counts(36, 20, "longtail", seed=0).tolist()
    # the test split stays balanced
    assert load("classes=36,n=20,profile=longtail,test_n=3", split="test").counts().tolist() == [3] * 36


@pytest.mark.parametrize("arg,words", [
    ("classes=7", "classes must be one of"),
    ("n=abc", "n must be a whole number"),
    ("n=0", "between 1 and"),
    ("colour=red", "valid: classes="),
    ("digits", "bad option"),
    ("profile=steep", "profile must be one of"),
    ("profile=longtail,n=2", "longtail needs n"),
    ("seed=-3", "seed must be 0 or more"),
])
def test_bad_options_explain(arg, words):
    with pytest.raises(CharlabError, match=words):
        parse_options(arg)


def test_through_load_source(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARLAB_CACHE_DIR", str(tmp_path))
    ds = load_source("synthetic:classes=digits,n=3,test_n=2")
    assert ds.classes == CLASSES_62[:10] and len(ds) == 30
    assert load_source("synthetic:classes=digits,n=3,test_n=2", split="test").counts().tolist() == [2] * 10
    again = load_source("synthetic:classes=digits,n=3,test_n=2")
    assert again.info.get("cached") and torch.equal(again.images, ds.images)
    with pytest.raises(CharlabError, match="classes must be one of"):
        load_source("synthetic:classes=greek")
    with pytest.raises(CharlabError, match="seed must be 0 or more"):
        load_source("synthetic:classes=digits,n=1", DataConfig(seed=-1))
