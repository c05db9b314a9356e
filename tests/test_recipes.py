"""Recipes: every named recipe is a valid config of a registered model, `_noaug` really
switches augmentation off, and `default` is TrainConfig() itself (one source of defaults)."""
from __future__ import annotations

import pytest
import torch

from charlab.config import TrainConfig, to_dict
from charlab.errors import UnknownNameError
from charlab.models import create_model
from charlab.recipes import get_recipe, list_recipes, recipe_doc

REPORT_RECIPES = ["report_lenet", "report_lenet_mish", "report_lenet_temperature", "report_kaggle_cnn",
                  "report_efficientnet_b0", "report_resnet18", "report_seed36_resnet"]


def test_the_reports_experiments_are_all_there():
    names = list_recipes()
    for n in ["default", *REPORT_RECIPES]:
        assert n in names and n + "_noaug" in names
    assert list_recipes("report_lenet*", with_noaug=False) == ["report_lenet", "report_lenet_mish",
                                                               "report_lenet_temperature"]


@pytest.mark.parametrize("name", list_recipes())
def test_recipe_builds_its_model_and_runs_a_batch(name):
    cfg = get_recipe(name)
    assert isinstance(cfg, TrainConfig)
    cfg.validate()
    model = create_model(cfg.model.name, num_classes=62, in_chans=1, image_size=cfg.data.image_size,
                         **cfg.model.kwargs)
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, cfg.data.image_size, cfg.data.image_size))
    assert out.shape == (2, 62)
    assert recipe_doc(name)
    if name.endswith("_noaug"):
        assert cfg.augment.is_identity() and cfg.augment.preset == "none"


def test_default_is_trainconfig_defaults():
    assert to_dict(get_recipe("default")) == to_dict(TrainConfig())


def test_recipes_augment_unless_noaug():
    for name in ["default", *REPORT_RECIPES]:
        assert not get_recipe(name).augment.is_identity(), name
        assert get_recipe(name, augment=False).augment.is_identity()


def test_report_settings_match_the_reports():
    for name in REPORT_RECIPES:  # none of the default recipe's extras leak into a reproduction
        cfg = get_recipe(name)
        assert (cfg.ema_decay, cfg.weight_decay, cfg.label_smoothing, cfg.optimizer, cfg.schedule) == (
            0.0, 0.0, 0.0, "adam", "constant"), name
    assert get_recipe("report_lenet_mish").model.kwargs == {"activation": "mish"}
    assert get_recipe("report_kaggle_cnn").model.name == "kaggle_cnn"
    seed36 = get_recipe("report_seed36_resnet")
    assert seed36.balance == "oversample" and seed36.augment.preset == "report36"
    assert seed36.augment.rotate == (-15.0, 25.0)


def test_source_and_overrides_and_fresh_copies():
    a = get_recipe("report_lenet", source="some/dir", epochs=3)
    assert a.data.source == "some/dir" and a.epochs == 3
    a.model.kwargs["x"] = 1
    assert "x" not in get_recipe("report_lenet").model.kwargs  # no shared mutable state between calls


def test_unknown_recipe_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match="report_kaggle_cnn"):
        get_recipe("report_kagle_cnn")
    with pytest.raises(UnknownNameError):
        get_recipe("nothing_noaug")


# --- the default recipe's weight EMA in the trainer -------------------------------------------

class _StopAfter:
    stop_reason = "test_stop"

    def __init__(self, epoch: int):
        self.epoch, self.should_stop = epoch, False

    def on_epoch_end(self, epoch, row):
        self.should_stop = epoch >= self.epoch


def test_ema_is_what_best_pt_holds_and_resumes_exactly(tmp_path):
    from charlab.checkpoint import load_checkpoint
    from charlab.data import Splits
    from charlab.training import fit
    from test_sweep import _base, _squares

    splits = Splits(train=_squares(16, 0), val=_squares(4, 1), test=None)
    cfg = _base(epochs=4)
    # Elapsed time only grows, so monitoring it makes the last epoch the best by construction: best.pt must
    # hold the EMA of the final step (a raw-weights best.pt fails the check below).
    cfg.ema_decay, cfg.monitor, cfg.mode = 0.9, "elapsed_s", "max"
    whole = fit(cfg, tmp_path / "whole", splits=splits)
    assert whole.best_epoch == 4
    last = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    assert last["ema"]["updates"] == 4 * 4  # one update per optimiser step
    raw, avg = last["model"], last["ema"]["model"]
    assert any(not torch.equal(raw[k], avg[k]) for k in raw)  # the average is not the raw weights
    best = load_checkpoint(tmp_path / "whole" / "best.pt").model.state_dict()
    assert all(torch.equal(best[k], avg[k]) for k in avg)
    # stop after epoch 2, resume: the EMA continues where it was, as if never interrupted
    fit(cfg, tmp_path / "split", splits=splits, callbacks=[_StopAfter(2)])
    fit(cfg, tmp_path / "split", splits=splits, resume=True)
    again = torch.load(tmp_path / "split" / "last.pt", weights_only=True)["ema"]
    assert again["updates"] == 16
    assert all(torch.allclose(again["model"][k].float(), avg[k].float(), atol=1e-6) for k in avg)


def test_train_cli_starts_from_a_recipe():
    from charlab.__main__ import build_parser
    from charlab.cli.train import build_config

    args = build_parser().parse_args(["train", "--recipe", "report_lenet_mish_noaug", "--epochs", "2"])
    cfg = build_config(args)
    assert cfg.model.kwargs == {"activation": "mish"} and cfg.epochs == 2 and cfg.augment.is_identity()
    assert to_dict(build_config(build_parser().parse_args(["train"]))) == to_dict(TrainConfig())


def test_the_strokes_recipe_is_the_default_plus_canvas_stroke_redrawings():
    ours, default = to_dict(get_recipe("strokes")), to_dict(TrainConfig())
    assert ours["data"].pop("strokes") == 2 and default["data"].pop("strokes") == 0
    assert ours == default  # nothing else differs: the comparison in BENCHMARKS.md is one option


def test_the_side_pen_optional_recipe_is_strokes_plus_an_optional_pen_free_box():
    ours, strokes = to_dict(get_recipe("side_pen_optional")), to_dict(get_recipe("strokes"))
    assert (ours["data"].pop("side_inputs"), strokes["data"].pop("side_inputs")) == ("pen_box", None)
    assert (ours["data"].pop("side_dropout"), strokes["data"].pop("side_dropout")) == (0.25, 0.0)
    assert ours == strokes
