"""Sweeps: Optuna trials are normal run directories tagged with the sweep's name, a study is
continued by name, pruning stops a run cleanly through the trainer's callback flag, and
`python -m charlab sweep` works end to end on a tiny learnable set."""
from __future__ import annotations

import json

import pytest
import torch

from charlab.config import DataConfig, ModelConfig, TrainConfig
from charlab.data import CharDataset, Splits
from charlab.errors import CharlabError
from charlab.sweep import PruningCallback, run_sweep, sweep_summary
from charlab.training import fit


def _squares(n_per_class: int, seed: int) -> CharDataset:
    """4 classes: a bright 6×6 square in one of the four quadrants, jittered: learnable in an epoch."""
    g = torch.Generator().manual_seed(seed)
    imgs, labels = [], []
    for c in range(4):
        for _ in range(n_per_class):
            x = torch.zeros(1, 16, 16, dtype=torch.uint8)
            oy, ox = (c // 2) * 8 + int(torch.randint(0, 3, (1,), generator=g)), (c % 2) * 8 + int(
                torch.randint(0, 3, (1,), generator=g))
            x[0, oy:oy + 5, ox:ox + 5] = 255
            imgs.append(x)
            labels.append(c)
    return CharDataset(torch.stack(imgs), torch.tensor(labels), classes=list("abcd"), source="squares")


@pytest.fixture(scope="module")
def splits() -> Splits:
    return Splits(train=_squares(16, 0), val=_squares(4, 1), test=_squares(4, 2))


def _base(epochs: int = 3) -> TrainConfig:
    return TrainConfig(data=DataConfig(source="squares", image_size=16), model=ModelConfig(name="charnet",
                       kwargs={"width": 4}), epochs=epochs, batch_size=16, patience=0)


class _FakeTrial:
    """Prunes from `prune_at` on; records what was reported."""

    def __init__(self, prune_at: int):
        self.prune_at, self.reported = prune_at, []

    def report(self, value, step):
        self.reported.append((step, value))

    def should_prune(self):
        return len(self.reported) >= self.prune_at


def test_pruning_callback_stops_fit_cleanly(splits, tmp_path):
    trial = _FakeTrial(prune_at=2)
    cb = PruningCallback(trial, "val_acc")
    res = fit(_base(epochs=5), tmp_path / "run", splits=splits, callbacks=[cb])
    assert cb.should_stop and cb.pruned_at == 2
    assert [s for s, _ in trial.reported] == [1, 2]
    assert res.stop_reason == "pruned" and len(res.history) == 2
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "done" and (tmp_path / "run" / "best.pt").exists()


def test_pruning_callback_ignores_a_missing_metric():
    cb = PruningCallback(_FakeTrial(prune_at=1), "val_acc")
    cb.on_epoch_end(1, {"train_loss": 1.0})
    assert not cb.should_stop


def test_sweep_trials_are_tagged_runs_and_a_study_continues(splits, tmp_path):
    storage = f"sqlite:///{tmp_path / 'sweeps.db'}"
    res = run_sweep("squares", 2, storage=storage, name="t1", base=_base(), root=tmp_path / "runs",
                    splits=splits)
    assert res.name == "t1" and len(res.trials) == 2
    for t in res.trials:
        cfg = json.loads((tmp_path / "runs" / t["run_dir"].split("/")[-1] / "config.json").read_text())
        assert cfg["sweep"] == "t1"
        status = json.loads((tmp_path / "runs" / t["run_dir"].split("/")[-1] / "status.json").read_text())
        assert status["sweep"] == "t1" and status["trial"] == t["number"]
        assert set(t["params"]) >= {"lr", "weight_decay", "batch_size", "width"}
    assert res.best_value is not None and 0 <= res.best_value <= 1
    again = run_sweep("squares", 1, storage=storage, name="t1", base=_base(), root=tmp_path / "runs", splits=splits)
    assert len(again.trials) == 3  # joined the same study: what lets machines share a sweep
    assert len(sweep_summary("t1", storage).trials) == 3


def test_sweep_rejects_bad_input(splits, tmp_path):
    with pytest.raises(CharlabError, match="storage"):
        run_sweep("squares", 1, storage="not-a-url", base=_base(), root=tmp_path, splits=splits)
    with pytest.raises(CharlabError, match="trials"):
        run_sweep("squares", 0, base=_base(), root=tmp_path, splits=splits)
    with pytest.raises(CharlabError, match="no sweep named"):
        sweep_summary("absent", f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(CharlabError, match="model"):
        run_sweep("squares", 1, model="no_such_net", storage=f"sqlite:///{tmp_path / 'y.db'}", base=_base(),
                  root=tmp_path, splits=splits)


def test_sweep_cli_show(splits, tmp_path, capsys):
    from charlab.__main__ import main

    storage = f"sqlite:///{tmp_path / 's.db'}"
    run_sweep("squares", 1, storage=storage, name="cli", base=_base(epochs=1), root=tmp_path / "runs", splits=splits)
    run_sweep("squares", 1, storage=storage, name="cli", base=_base(epochs=1), root=tmp_path / "runs", splits=splits)
    assert main(["sweep", "--show", "cli", "--storage", storage, "--json", "--ensemble", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["name"] == "cli" and len(out["trials"]) == 2 and out["direction"] == "maximize"
    ranked = sorted(out["trials"], key=lambda t: t["value"], reverse=True)
    assert out["ensemble"] == "+".join(t["run_dir"] for t in ranked)
    from charlab.predict import load_predictor

    assert load_predictor(out["ensemble"]).is_ensemble  # usable wherever a checkpoint is
