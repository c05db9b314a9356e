"""Real handwriting: the Chars74K zips in ../shared/data (skipped with a reason where absent).

The first load decodes 3,410 PNGs (~15 s on 2 cores) and is cached in the default cache, so
later runs take well under a second.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from charlab.__main__ import main
from charlab.config import DataConfig
from charlab.data import CHARS62, load_source, load_splits, source_counts

CLASSES = list(CHARS62)


@pytest.fixture(scope="session")
def train(chars74k_train_zip):
    return load_source(str(chars74k_train_zip))


def test_listing_counts_without_decoding(chars74k_train_zip):
    classes, counts, skipped = source_counts(str(chars74k_train_zip))
    assert classes == CLASSES and counts.tolist() == [40] * 62 and skipped == []
    classes, counts, _ = source_counts(str(chars74k_train_zip), split="test")
    assert classes == CLASSES and counts.tolist() == [15] * 62


def test_train_zip_62_classes_40_each_ink_centred(train):
    assert train.classes == CLASSES and train.counts().tolist() == [40] * 62
    assert tuple(train.images.shape) == (2480, 1, 28, 28) and train.skipped == []
    imgs = train.images[:, 0].numpy().astype(np.float64)
    assert imgs[:, 0, :].max() == 0 and imgs[:, :, 0].max() == 0  # dark background, ink away from the edge
    assert (imgs.max(axis=(1, 2)) == 255).all()
    ys, xs = np.mgrid[:28, :28]
    mass = imgs.sum(axis=(1, 2))
    cy, cx = (imgs * ys).sum(axis=(1, 2)) / mass, (imgs * xs).sum(axis=(1, 2)) / mass
    assert abs(cy.mean() - 13.5) < 1 and abs(cx.mean() - 13.5) < 1
    assert np.percentile(np.abs(cy - 13.5), 95) < 4 and np.percentile(np.abs(cx - 13.5), 95) < 4
    ink = (imgs > 127).mean(axis=(1, 2))
    assert 0.08 < np.median(ink) < 0.4  # strokes neither hairlines nor blobs (MNIST: ~0.19)


def test_sibling_test_split_and_splits(chars74k_train_zip, train):
    sp = load_splits(DataConfig(source=str(chars74k_train_zip)))
    assert sp.test.classes == CLASSES and sp.test.counts().tolist() == [15] * 62
    assert sp.test.source.endswith("testPart1.zip")
    assert (len(sp.train), len(sp.val), len(sp.test)) == (2108, 372, 930)
    assert sp.val.counts().tolist() == [6] * 62  # round(40 × 0.15)
    assert not set(sp.train.paths) & set(sp.val.paths) and not set(sp.train.paths) & set(sp.test.paths)


def test_cli_info_json(chars74k_train_zip, train, capsys):
    assert main(["data", "info", "--source", str(chars74k_train_zip), "--json", "--no-splits"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["classes"] == CLASSES and out["counts"] == [40] * 62 and out["n_images"] == 2480
    assert out["skipped"] == [] and out["imbalance_ratio"] == 1.0
