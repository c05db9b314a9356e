"""The shipped default model: small, self-contained, and it reads real handwriting."""
from __future__ import annotations

import json
from pathlib import Path

from charlab.__main__ import main
from charlab.checkpoint import load_checkpoint

DEFAULT = Path(__file__).resolve().parents[1] / "checkpoints" / "default.pt"


def test_default_checkpoint_is_small_and_rebuilds_its_model_alone():
    assert DEFAULT.stat().st_size < 5 * 1024 * 1024
    ck = load_checkpoint(DEFAULT)
    assert ck.config.data.source.startswith("synthetic")  # trained on the embedded data only
    assert len(ck.classes) == 62 and ck.classes[:3] == ["0", "1", "2"]


def test_synthetic_to_real_on_the_chars74k_test_zip_given_directly(chars74k_test_zip, capsys):
    # `--source testPart1.zip` has no test part of its own: all of it is the test split.
    assert main(["eval", "--run", str(DEFAULT), "--source", str(chars74k_test_zip), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 930
    assert report["accuracy"] >= 0.5  # issue 7's synthetic-to-real target (measured 0.748)


def test_a_train_zip_evaluates_on_its_sibling_test_zip(chars74k_train_zip, capsys):
    assert main(["eval", "--run", str(DEFAULT), "--source", str(chars74k_train_zip), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 930
