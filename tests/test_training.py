"""The trainer in-process, on tiny hand-made data (a bar whose height codes the class), and
one short real run on Chars74K."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from charlab.checkpoint import load_checkpoint, read_checkpoint_dict, save_checkpoint
from charlab.config import AugmentConfig, ModelConfig, TrainConfig
from charlab.data import Splits
from charlab.data.dataset import CharDataset
from charlab.errors import CharlabError, CheckpointError
from charlab.training import Batches, EarlyStopping, evaluate, fit, train_one_epoch

TIMING = {"epoch_seconds", "images_per_s", "elapsed_s"}


def bars(n: int, seed: int, classes: int = 4, size: int = 28) -> CharDataset:
    """Class c = a bright horizontal bar at height 3+5c, under heavy pixel noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    imgs = torch.rand(n, 1, size, size, generator=g) * 150  # N×1×S×S noise
    for i, y in enumerate(labels.tolist()):
        imgs[i, 0, 3 + 5 * y:6 + 5 * y, 4:24] += 120
    return CharDataset(imgs.clamp(0, 255).to(torch.uint8), labels, [str(c) for c in range(classes)])


def tiny_splits(classes: int = 4, test: bool = True):
    return SimpleNamespace(train=bars(160, 1, classes), val=bars(48, 2, classes),
                           test=bars(48, 3, classes) if test else None, notes=[])


def tiny_config(**kw) -> TrainConfig:
    cfg = TrainConfig(epochs=3, batch_size=32, lr=3e-3, patience=0, device="cpu", label_smoothing=0.0)
    cfg.model.name = "lenet"
    cfg.augment, cfg.ema_decay = AugmentConfig(), 0.0  # the trainer's plain path, not the default recipe's extras
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def curves(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


@pytest.fixture(scope="module")
def splits():
    return tiny_splits()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, splits):
    """One uninterrupted 3-epoch run that several tests compare against."""
    d = tmp_path_factory.mktemp("ref") / "run"
    return fit(tiny_config(), d, splits=splits), d


def test_fit_learns_and_writes_the_run_dir(reference):
    result, d = reference
    assert result.state == "done" and result.stop_reason == "epochs"
    h = result.history
    assert [r["epoch"] for r in h] == [1, 2, 3]
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    assert h[-1]["val_acc"] > 0.5  # chance is 0.25
    for k in ("train_loss", "train_acc", "val_loss", "val_acc", "val_macro_f1", "lr", "epoch_seconds",
              "images_per_s", "elapsed_s"):
        assert k in h[0]
    rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert curves(rows[:3]) == curves(h)
    assert rows[3]["split"] == "test" and rows[3]["test_acc"] == result.test_metrics["test_acc"]
    status = json.loads((d / "status.json").read_text())
    assert status["state"] == "done" and status["epoch"] == 3 and status["test_metrics"]
    assert status["best_epoch"] == result.best_epoch and status["best"] == result.best
    assert not (d / "STOP").exists()


def test_checkpoints_rebuild_the_model_alone(reference, splits):
    result, d = reference
    best = load_checkpoint(d / "best.pt")
    assert best.classes == splits.train.classes and best.input_shape == (28, 28)
    assert best.epoch == result.best_epoch and best.metrics["val_acc"] == result.best
    assert best.state["test_metrics"] == result.test_metrics  # best.pt reports its own test score
    x = splits.val.images[:8].float() / 255
    with torch.no_grad():
        assert torch.allclose(best.model(x), result.model(x), atol=1e-5)  # fit returns the best weights
    last = load_checkpoint(d / "last.pt")
    assert last.epoch == 3
    for key in ("optimizer", "scheduler", "rng", "early_stopping"):
        assert key in last.state


def test_stop_mid_epoch_then_resume_continues_identically(tmp_path, reference, splits):
    """Determinism by seed, and exact resume: a run stopped at batch 2 of epoch 2 and resumed
    ends with the same curves, line for line, as the uninterrupted run."""
    d = tmp_path / "run"

    def stop_at_step_7(done, total, msg):  # 5 batches per epoch: step 7 is epoch 2, batch 2
        if done == 7:
            (d / "STOP").write_text("test")

    stopped = fit(tiny_config(), d, splits=splits, progress=stop_at_step_7)
    assert stopped.state == "stopped" and stopped.stop_reason == "stop_request"
    assert len(stopped.history) == 1 and stopped.test_metrics is None
    assert json.loads((d / "status.json").read_text())["state"] == "stopped"
    last = read_checkpoint_dict(d / "last.pt")
    assert last["epoch"] == 1 and last["partial"]["steps"] == 2
    resumed = fit(tiny_config(), d, splits=splits, resume=True)
    assert resumed.state == "done"
    rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(line) for line in (reference[1] / "metrics.jsonl").read_text().splitlines()]
    assert curves(rows) == curves(ref)


@pytest.mark.parametrize("threads", [2, 1])
def test_augmenting_ahead_on_a_second_thread_draws_the_in_line_stream(threads):
    """On two cores the trainer augments batch k+1 beside the step of batch k: the batches
    are those the in-line path draws, and an epoch stopped early leaves the generator where the
    in-line path would (so a mid-epoch checkpoint resumes exactly) and the thread count as it was."""
    from charlab.augment import get_preset
    from charlab.data.dataset import to_float
    from charlab.training.loop import augmented_batches, train_augment

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cfg, data = get_preset("strong"), bars(200, 4)
        batches = [(data.images[i:i + 32], data.labels[i:i + 32]) for i in range(0, 200, 32)]
        inline_g, ahead_g = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        inline = [train_augment(to_float(x), cfg, inline_g) for x, _ in batches[:3]]
        feed = augmented_batches(batches, torch.device("cpu"), cfg, ahead_g)
        ahead = []
        for x, y in feed:
            assert torch.get_num_threads() == threads  # the step keeps its threads
            ahead.append(x)
            if len(ahead) == 3:
                break
        feed.close()
        assert all(torch.equal(a, b) for a, b in zip(inline, ahead))
        assert not torch.equal(inline[0], to_float(batches[0][0]))  # it did augment
        assert torch.equal(ahead_g.get_state(), inline_g.get_state())  # batch 4, augmented ahead, un-drawn
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)


def test_an_error_in_the_augmentation_ahead_reaches_the_trainer_and_restores_the_threads(monkeypatch):
    """An augmentation that fails on the second thread fails the epoch with its own error (as in
    line), and the thread count is back as it was."""
    import charlab.augment
    from charlab.augment import get_preset
    from charlab.training.loop import augmented_batches

    calls = []

    def failing(x, cfg, generator):
        calls.append(1)
        if len(calls) >= 2:
            raise CharlabError("augmentation failed on purpose")
        return x

    monkeypatch.setattr(charlab.augment, "augment_batch", failing)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        data = bars(96, 6)
        batches = [(data.images[i:i + 32], data.labels[i:i + 32]) for i in range(0, 96, 32)]
        feed = augmented_batches(batches, torch.device("cpu"), get_preset("strong"), torch.Generator().manual_seed(0),
                                 step_threads=1)
        with pytest.raises(CharlabError, match="on purpose"):
            for _ in feed:
                pass
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_sparing_a_thread_is_measured_once_and_moves_no_random_stream(monkeypatch):
    """The step's thread count beside the augmentation: measured once per model and batch shape,
    without drawing from the run's random streams; a pinned OMP_NUM_THREADS or one thread is kept."""
    from charlab.augment import get_preset
    from charlab.models import create_model
    from charlab.training import loop

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model, batch, cfg = create_model("lenet", num_classes=4, image_size=28), bars(32, 5).images, get_preset("strong")
        state = torch.get_rng_state()
        first = loop.spare_a_thread(model, batch, cfg)
        assert torch.equal(torch.get_rng_state(), state) and torch.get_num_threads() == 2
        assert list(loop._SPARE[model].values()) == [first]
        assert loop.spare_a_thread(model, batch, cfg) == first and len(loop._SPARE[model]) == 1  # not measured again
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert loop.spare_a_thread(model, batch[:16], cfg) is False
        torch.set_num_threads(1)
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert loop.spare_a_thread(model, batch[:16], cfg) is False
    finally:
        torch.set_num_threads(threads)


def test_stop_mid_epoch_then_resume_with_augmentation_on_two_threads(tmp_path, splits, monkeypatch):
    """The exact resume above, on the path that augments ahead on a second thread."""
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # fit keeps the process's thread count
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        config = lambda: tiny_config(augment=AugmentConfig(rotate=(-10.0, 10.0), rotate_p=1.0, shift=0.1, shift_p=1.0))
        whole = fit(config(), tmp_path / "whole", splits=splits)
        d = tmp_path / "run"

        def stop_at_step_7(done, total, msg):
            if done == 7:
                (d / "STOP").write_text("test")

        assert fit(config(), d, splits=splits, progress=stop_at_step_7).state == "stopped"
        assert fit(config(), d, splits=splits, resume=True).state == "done"
        rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
        ref = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
        assert whole.state == "done" and curves(rows) == curves(ref)
    finally:
        torch.set_num_threads(threads)


# The keys the earlier release wrote into last.pt (before every rank's random streams were kept)
EARLIER_LAST_PT = {"format_version", "model", "config", "classes", "input_shape", "epoch", "metrics", "optimizer",
                   "scheduler", "early_stopping", "rng", "ema", "elapsed_s", "partial"}


def test_a_last_pt_in_the_earlier_layout_resumes_identically(tmp_path, splits):
    """A run stopped mid-epoch whose last.pt has the earlier release's layout (rank 0's random
    streams only, no rng_ranks) resumes to the same curves as the uninterrupted run, with EMA on."""
    d, ref = tmp_path / "run", tmp_path / "ref"
    cfg = tiny_config(ema_decay=0.99)

    def stop_at_step_7(done, total, msg):
        if done == 7:
            (d / "STOP").write_text("test")

    fit(cfg, d, splits=splits, progress=stop_at_step_7)
    last = read_checkpoint_dict(d / "last.pt")
    assert len(last.pop("rng_ranks")) == 1 and set(last) == EARLIER_LAST_PT
    assert last["partial"]["steps"] == 2 and last["ema"]["updates"] == 7
    torch.save(last, d / "last.pt")
    resumed = fit(cfg, d, splits=splits, resume=True)
    whole = fit(cfg, ref, splits=splits)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert curves(resumed.history) == curves(whole.history)
    x = splits.val.images[:8].float() / 255
    with torch.no_grad():
        assert torch.equal(resumed.model(x), whole.model(x))


def test_early_stopping_stops_and_restores_the_best_weights(tmp_path, splits):
    # train_loss falls every epoch, so under mode=max epoch 1 stays the best and patience 2 ends epoch 3
    cfg = tiny_config(epochs=6, monitor="train_loss", mode="max", patience=2)
    result = fit(cfg, tmp_path / "run", splits=splits)
    assert result.stop_reason == "early_stopping" and len(result.history) == 3
    assert result.best_epoch == 1
    best = read_checkpoint_dict(tmp_path / "run" / "best.pt")["model"]
    last = read_checkpoint_dict(tmp_path / "run" / "last.pt")["model"]
    now = result.model.state_dict()
    assert all(torch.equal(now[k], best[k]) for k in best)
    assert not all(torch.equal(now[k], last[k]) for k in last)


def test_early_stopping_tracker_decides_without_acting():
    es = EarlyStopping("val_loss", "min", patience=2, min_delta=0.1)
    m = nn.Linear(2, 2)
    assert es.update(1, {"val_loss": 1.0}, m)
    assert not es.update(2, {"val_loss": 0.95}, m)  # smaller than min_delta: not an improvement
    assert not es.should_stop
    assert not es.update(3, {"val_loss": float("nan")}, m)
    assert es.should_stop and es.best_epoch == 1
    with pytest.raises(CharlabError, match="val_acc"):  # a missing key names the ones that exist
        es.update(4, {"val_acc": 0.5}, m)


def test_unknown_monitor_lists_the_available_metrics(splits):
    with pytest.raises(CharlabError, match="val_macro_f1"):
        fit(tiny_config(monitor="val_f1"), splits=splits)


def test_init_from_other_classes_replaces_the_head_and_freezes_the_body(tmp_path, reference):
    result, d = reference
    three = tiny_splits(classes=3, test=False)
    cfg = tiny_config(epochs=1, init_from=str(d / "best.pt"), freeze_body=True)
    tuned = fit(cfg, splits=three)
    assert tuned.model.head.out_features == 3
    assert any("new head" in n for n in tuned.notes)
    before = read_checkpoint_dict(d / "best.pt")["model"]
    after = tuned.model.state_dict()
    body = [k for k in before if not k.startswith("head.")]
    assert any("running_mean" in k for k in body)
    assert body and all(torch.equal(before[k], after[k]) for k in body)  # frozen, BatchNorm statistics included
    other = tiny_config(epochs=1, init_from=str(d / "best.pt"))
    other.model.name = "simple_cnn"
    with pytest.raises(CheckpointError, match="lenet"):  # another architecture is refused in words
        fit(other, splits=three)


def test_corrupt_or_foreign_init_from_is_a_clear_error(tmp_path, splits):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable charlab checkpoint"):
        fit(tiny_config(init_from=str(bad)), splits=splits)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a charlab checkpoint"):
        fit(tiny_config(init_from=str(foreign)), splits=splits)


def test_evaluate_against_hand_computed_values():
    class Lookup(nn.Module):  # image i (pixel value i) -> the hand-chosen logits row i
        def __init__(self, logits):
            super().__init__()
            self.logits = logits

        def forward(self, x):
            return self.logits[(x[:, 0, 0, 0] * 255).round().long()]

    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])
    images = torch.tensor([0, 1, 2, 3], dtype=torch.uint8).view(4, 1, 1, 1)
    model = Lookup(logits)
    labels = torch.tensor([0, 1, 1, 1])  # predictions 0, 1, 0, 1 -> 3 of 4 right
    m = evaluate(model, images, labels, 2, batch_size=3, return_probs=True)
    expected_loss = torch.nn.functional.cross_entropy(logits, labels).item()
    assert math.isclose(m["loss"], expected_loss, rel_tol=1e-6)
    assert m["acc"] == 0.75
    # class 0: P=1/2 R=1 F1=2/3; class 1: P=1 R=2/3 F1=4/5
    assert math.isclose(m["macro_f1"], (2 / 3 + 4 / 5) / 2, rel_tol=1e-9)
    assert m["probs"].shape == (4, 2)


def test_train_one_epoch_honours_stop_check_and_batches_shard(splits):
    ds = splits.train
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))
    full = Batches(ds.images, ds.labels, order, 32)
    shards = [Batches(ds.images, ds.labels, order, 32, rank=r, world_size=2) for r in (0, 1)]
    assert len(full) == len(shards[0]) == len(shards[1]) == 5
    for (x, y), (_, y0), (_, y1) in zip(full, *shards):  # every row of every global batch, on one rank only
        assert sorted(torch.cat([y0, y1]).tolist()) == sorted(y.tolist())
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = train_one_epoch(model, full, opt, None, nn.CrossEntropyLoss(), augment_cfg=None, generator=None,
                          device="cpu", stop_check=lambda: True)
    assert out["stopped"] and out["steps"] == 1 and out["n"] == 32


def test_a_last_batch_of_one_image_is_dropped_so_batchnorm_trains(splits):
    # BatchNorm1d (LeNet's head) refuses a training batch of one sample; 32k+1 images made fit crash
    ds = splits.train
    order = torch.arange(33)
    assert len(Batches(ds.images, ds.labels, order, 32)) == 1  # 32 + 1: the lone image waits for the next epoch
    assert len(Batches(ds.images, ds.labels, torch.arange(34), 32)) == 2  # 32 + 2 trains both
    assert len(Batches(ds.images, ds.labels, torch.arange(35), 32, world_size=2)) == 1  # 3 rows: one rank gets 1
    odd = Splits(train=ds.subset(torch.arange(33)), val=splits.val, test=None)
    cfg = tiny_config(epochs=1)
    cfg.batch_size, cfg.model = 32, ModelConfig(name="lenet")
    assert fit(cfg, splits=odd).history[0]["train_loss"] > 0


@pytest.mark.parametrize("optimizer,schedule,balance,preset", [
    ("adamw", "onecycle", "oversample", "strong"), ("adam", "cosine", "sampler", "light"),
    ("sgd", "constant", "loss", "none")])
def test_every_optimizer_schedule_balance_and_augmentation_trains(optimizer, schedule, balance, preset):
    from charlab.augment import get_preset

    skewed = tiny_splits(test=False)
    keep = [i for i, y in enumerate(skewed.train.labels.tolist()) if y != 3 or i % 8 == 3]  # class 3: 5 images
    skewed.train = skewed.train.subset(keep)
    cfg = tiny_config(epochs=2, optimizer=optimizer, schedule=schedule, balance=balance, lr=0.02 if
                      optimizer == "sgd" else 3e-3, max_minutes=5)
    cfg.augment = get_preset(preset)
    result = fit(cfg, splits=skewed)
    assert len(result.history) == 2 and all(math.isfinite(r["train_loss"]) for r in result.history)
    lrs = [r["lr"] for r in result.history]
    assert (lrs[0] == lrs[1] == cfg.lr) if schedule == "constant" else lrs[1] < lrs[0]
    if balance == "oversample":
        assert any("oversampled" in n for n in result.notes)


def test_bf16_autocast_option_changes_the_arithmetic_and_still_learns(splits):
    fp32 = fit(tiny_config(), splits=splits)
    bf16 = fit(tiny_config(bf16=True), splits=splits)
    assert bf16.history[0]["train_loss"] != fp32.history[0]["train_loss"]  # the forward ran in bfloat16
    assert abs(bf16.history[0]["train_loss"] - fp32.history[0]["train_loss"]) < 0.1 * fp32.history[0]["train_loss"]
    assert bf16.history[-1]["val_acc"] > 0.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here; the GPU path runs where one is")
def test_gpu_path_keeps_data_and_augmentation_on_the_device(tmp_path, splits):
    from charlab.augment import get_preset
    from charlab.training import EpochBatches
    from charlab.training.distributed import DistEnv
    from charlab.training.state import stream_seed

    cfg = tiny_config(device="cuda", bf16=True, augment=get_preset("strong"))
    batches = EpochBatches(splits.train, cfg, DistEnv(), torch.device("cuda"), stream_seed)
    x, y = next(iter(batches(1)))
    assert x.is_cuda and y.is_cuda and batches.images.is_cuda  # resident: no host copy per batch
    result = fit(cfg, tmp_path / "run", splits=splits)
    assert next(result.model.parameters()).is_cuda
    assert result.history[-1]["val_acc"] > 0.5
    assert load_checkpoint(tmp_path / "run" / "best.pt").model(splits.val.images[:4].float() / 255).shape == (4, 4)


def test_overfit_batch_debug_mode(splits):
    cfg = tiny_config(epochs=12, overfit_batch=True, lr=3e-3)
    cfg.model.kwargs = {"dropout": 0.0}
    result = fit(cfg, splits=splits)
    assert result.history[-1]["train_acc"] == 1.0 and result.history[-1]["train_loss"] < 0.1


@pytest.mark.slow  # ~25 s on 2 shared cores (decoding the zip is cached after the first time)
def test_short_real_run_on_chars74k(tmp_path, chars74k_train_zip):
    """Ten digit classes of real Chars74K handwriting, a few epochs of LeNet: learns well above chance."""
    from charlab.config import DataConfig
    from charlab.data import load_splits

    data = DataConfig(source=str(chars74k_train_zip), image_size=28, val_fraction=0.2)
    full = load_splits(data)
    digits = [i for i, c in enumerate(full.train.classes) if c.isdigit()]
    assert len(digits) == 10

    def keep(ds):
        idx = torch.nonzero(torch.isin(ds.labels, torch.tensor(digits))).flatten()
        sub = ds.subset(idx)
        remap = {old: new for new, old in enumerate(digits)}
        return CharDataset(sub.images, torch.tensor([remap[v] for v in sub.labels.tolist()]),
                           [full.train.classes[i] for i in digits], source=sub.source)

    splits = SimpleNamespace(train=keep(full.train), val=keep(full.val), test=None, notes=[])
    cfg = tiny_config(epochs=8, lr=3e-3, batch_size=32)
    cfg.data = data
    result = fit(cfg, tmp_path / "run", splits=splits)
    h = result.history
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    assert result.best > 0.3, h  # chance is 0.1
    assert load_checkpoint(tmp_path / "run" / "best.pt").classes == list("0123456789")


def test_choices_are_registry_keys_and_unknown_names_list_the_valid_ones(splits):
    from charlab.balance import BALANCE_STRATEGIES, CLASS_WEIGHTS
    from charlab.optim import OPTIMIZERS, SCHEDULES
    from charlab.saliency import SALIENCY

    for name, reg in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("balance", BALANCE_STRATEGIES),
                      ("balance_weights", CLASS_WEIGHTS)):
        with pytest.raises(CharlabError, match=f"{name} must be one of {', '.join(reg.names())}, got 'nope'"):
            tiny_config(**{name: "nope"}).validate()
    assert OPTIMIZERS.names()[0] == TrainConfig().optimizer and SCHEDULES.names()[0] == TrainConfig().schedule
    with pytest.raises(CharlabError, match="unknown saliency kind 'nope'; valid: grad_cam, input_gradient"):
        SALIENCY.get("nope")

    # a new optimizer is one registration: validation, the trainer (and the CLI's choices) take it
    @OPTIMIZERS.register("sgd_nesterov")
    def _nesterov(params, config):
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, nesterov=True)

    try:
        result = fit(tiny_config(optimizer="sgd_nesterov", lr=0.05), splits=splits)
        assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
        import argparse

        from charlab.cli.train import register

        sub = argparse.ArgumentParser().add_subparsers()
        register(sub)
        opt = next(a for a in sub.choices["train"]._actions if a.dest == "optimizer")
        assert "sgd_nesterov" in opt.choices
    finally:
        OPTIMIZERS._items.pop("sgd_nesterov")
