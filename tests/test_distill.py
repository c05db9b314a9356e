"""Distillation (TrainConfig.teacher): the loss against hand-computed values, a student that
follows its teacher, the teacher stored with the student's config, a teacher of other classes
refused before training, and an exact resume with a teacher on the augmenting-ahead path."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from charlab.checkpoint import load_checkpoint, save_ensemble
from charlab.config import AugmentConfig, TrainConfig, from_dict
from charlab.data.dataset import CharDataset
from charlab.errors import CharlabError, CheckpointError
from charlab.training import fit
from charlab.training.distill import DistillationLoss, Teacher

from test_side_inputs import twins  # noqa: F401  (a fixture: size twins that only side inputs tell apart)
from test_training import bars, curves, tiny_config, tiny_splits


class Fixed(nn.Module):
    """Returns the same logits for every image."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, x):
        return self.logits.expand(len(x), -1)


def test_distillation_loss_against_a_hand_computed_case():
    # student logits [1, 0], label 0; teacher logits [0, 1]; T = 2, w = 0.25
    # soft: log_softmax([0.5, 0]) = [-0.474077, -0.974077]; teacher at T: softmax([0, 0.5]) = [0.377541, 0.622459]
    #   KL = 0.377541·(-0.974077 + 0.474077) + 0.622459·(-0.474077 + 0.974077) = 0.122459; × T² = 0.489836
    # hard, no smoothing: log(1 + e^-1) = 0.313262 -> 0.75·0.313262 + 0.25·0.489836 = 0.357405
    # hard, smoothing 0.1 on 2 classes: 0.95·0.313262 + 0.05·1.313262 = 0.363262 -> 0.394906
    s, y = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    soft = Teacher([Fixed([0.0, 1.0])], temperature=2.0)(torch.zeros(1, 1, 4, 4))
    assert torch.allclose(soft, torch.tensor([[0.377541, 0.622459]]), atol=1e-6)
    plain = DistillationLoss(nn.CrossEntropyLoss(), weight=0.25, temperature=2.0)
    assert plain(s, y, soft).item() == pytest.approx(0.357405, abs=1e-5)
    smoothed = DistillationLoss(nn.CrossEntropyLoss(label_smoothing=0.1), weight=0.25, temperature=2.0)
    assert smoothed(s, y, soft).item() == pytest.approx(0.394906, abs=1e-5)
    # w = 0 is the hard loss alone; the soft term's gradient is w·T·(softmax(s/T) - p_t) / N
    assert DistillationLoss(nn.CrossEntropyLoss(), 0.0, 2.0)(s, y, soft).item() == pytest.approx(0.313262, abs=1e-5)
    s.requires_grad_(True)
    DistillationLoss(nn.CrossEntropyLoss(), 1.0, 2.0)(s, y, soft).backward()
    expect = 2.0 * (torch.tensor([0.622459, 0.377541]) - torch.tensor([0.377541, 0.622459]))
    assert torch.allclose(s.grad[0], expect, atol=1e-5)


def test_an_ensemble_teacher_averages_its_members_softened_probabilities():
    # T = 2: member 1 logits [0, 2 ln 3] -> [0.25, 0.75]; member 2 [0, 0] -> [0.5, 0.5]; mean [0.375, 0.625]
    teacher = Teacher([Fixed([0.0, 2 * math.log(3)]), Fixed([0.0, 0.0])], temperature=2.0)
    teacher.train()  # a trainer's model.train() must not wake the teacher's dropout or BatchNorm
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert torch.allclose(teacher(torch.zeros(3, 1, 4, 4)), torch.tensor([[0.375, 0.625]] * 3), atol=1e-6)


def shifted(ds: CharDataset) -> CharDataset:
    """The same images with every label moved on by one class: a teacher that learns these is wrong everywhere."""
    return CharDataset(ds.images, (ds.labels + 1) % ds.num_classes, list(ds.classes))


@pytest.fixture(scope="module")
def shifted_teacher(tmp_path_factory):
    """A lenet trained on bars whose labels are shifted by one (bar c called c+1)."""
    s = tiny_splits()
    d = tmp_path_factory.mktemp("teacher") / "run"
    res = fit(tiny_config(epochs=10), d, splits=type(s)(train=shifted(s.train), val=shifted(s.val), test=None, notes=[]))
    assert res.best > 0.9  # it learned the shifted labels
    return d / "best.pt"


def test_a_student_follows_its_teacher_and_reloads_with_its_config(tmp_path, shifted_teacher):
    """With all the weight on the teacher the student learns the teacher's (shifted) answers, not
    the labels; with none it learns the labels: the soft target really reaches the loss. (The last
    epoch is kept: best-by-validation would pick the student's least-taught epoch.)"""
    s = tiny_splits()
    student = fit(tiny_config(epochs=8, teacher=str(shifted_teacher), distill_weight=1.0, distill_temperature=1.0,
                              monitor="elapsed_s"), tmp_path / "student", splits=s)
    x = s.val.images.float() / 255
    with torch.no_grad():
        pred = student.model(x).argmax(1)
    assert (pred == (s.val.labels + 1) % 4).float().mean() > 0.8
    assert (pred == s.val.labels).float().mean() < 0.2
    assert any("distilling" in n for n in student.notes)
    best = load_checkpoint(tmp_path / "student" / "best.pt")  # the student is one plain model
    assert (best.config.teacher, best.config.distill_weight, best.config.distill_temperature) == (
        str(shifted_teacher), 1.0, 1.0)
    stored = from_dict(TrainConfig, json.loads((tmp_path / "student" / "config.json").read_text()))
    assert stored.teacher == str(shifted_teacher) and stored.distill_weight == 1.0
    honest = fit(tiny_config(epochs=4, teacher=str(shifted_teacher), distill_weight=0.0), tmp_path / "honest", splits=s)
    assert honest.best > 0.8


def test_an_ensemble_file_teaches_as_its_members_average(tmp_path, shifted_teacher):
    s = tiny_splits()
    save_ensemble(tmp_path / "ens.pt", [shifted_teacher, shifted_teacher])
    res = fit(tiny_config(epochs=8, teacher=str(tmp_path / "ens.pt"), distill_weight=1.0, distill_temperature=1.0,
                          monitor="elapsed_s"), None, splits=s)
    assert any("(2 model(s))" in n for n in res.notes)
    with torch.no_grad():
        pred = res.model(s.val.images.float() / 255).argmax(1)
    assert (pred == (s.val.labels + 1) % 4).float().mean() > 0.8


def test_a_teacher_of_other_classes_is_refused_before_training(tmp_path, shifted_teacher):
    three = type(tiny_splits())(train=bars(120, 1, 3), val=bars(36, 2, 3), test=None, notes=[])
    started = []
    with pytest.raises(CheckpointError, match=r"knows 4 classes \(0 1 2 3\), this run's data has 3 \(0 1 2\)"):
        fit(tiny_config(teacher=str(shifted_teacher)), tmp_path / "run", splits=three,
            progress=lambda *a: started.append(a))
    assert not started  # not one batch trained
    reordered = tiny_splits()
    for ds in (reordered.train, reordered.val, reordered.test):
        ds.classes = ["3", "2", "1", "0"]
    with pytest.raises(CheckpointError, match="another order"):
        fit(tiny_config(teacher=str(shifted_teacher)), None, splits=reordered)
    with pytest.raises(CheckpointError, match="not found"):
        fit(tiny_config(teacher=str(tmp_path / "nothing.pt")), None, splits=tiny_splits())
    with pytest.raises(CharlabError, match="distill_weight"):
        tiny_config(teacher=str(shifted_teacher), distill_weight=1.5).validate()


def test_stop_mid_epoch_then_resume_with_a_teacher_and_augmentation_ahead(tmp_path, shifted_teacher, monkeypatch):
    """The teacher draws no random numbers: a run stopped at batch 2 of epoch 2 and resumed ends
    with the uninterrupted run's curves, on the path that augments ahead on a second thread."""
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # fit keeps the process's thread count
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    s = tiny_splits()
    try:
        def config():
            return tiny_config(augment=AugmentConfig(rotate=(-10.0, 10.0), rotate_p=1.0, shift=0.1, shift_p=1.0),
                               teacher=str(shifted_teacher), distill_weight=0.5, ema_decay=0.99)

        whole = fit(config(), tmp_path / "whole", splits=s)
        d = tmp_path / "run"

        def stop_at_step_7(done, total, msg):  # 5 batches per epoch: step 7 is epoch 2, batch 2
            if done == 7:
                (d / "STOP").write_text("test")

        assert fit(config(), d, splits=s, progress=stop_at_step_7).state == "stopped"
        resumed = fit(config(), d, splits=s, resume=True)
        rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
        ref = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
        assert resumed.state == "done" and curves(rows) == curves(ref)
        with torch.no_grad():
            x = s.val.images[:8].float() / 255
            assert torch.equal(resumed.model(x), whole.model(x))
    finally:
        torch.set_num_threads(threads)


def test_bench_strokes_refuses_a_teacher_that_saw_the_validation_images(shifted_teacher):
    from charlab.bench.strokes import check_teacher_split

    same = tiny_config()  # the teacher held out 15% of the same source with split seed 0
    check_teacher_split(str(shifted_teacher), same)
    other = tiny_config()
    other.data.val_fraction = 0.0  # another split than the teacher held out (the check is on equality)
    with pytest.raises(SystemExit, match="member 1 trained on synthetic with val_fraction 0.15"):
        check_teacher_split(str(shifted_teacher), other)


def test_train_cli_takes_the_teacher_flags():
    from charlab.__main__ import build_parser
    from charlab.cli.train import build_config

    args = build_parser().parse_args(["train", "--teacher", "ens.pt", "--distill-weight", "0.7",
                                      "--distill-temperature", "3"])
    cfg = build_config(args)
    assert (cfg.teacher, cfg.distill_weight, cfg.distill_temperature) == ("ens.pt", 0.7, 3.0)


def test_bench_accuracy_distils_its_members_ensemble(tmp_path, monkeypatch):
    """`bench accuracy --members 2 --distill` on a tiny zip pair: the teacher file holds both
    members, the student's run stores it as its teacher, and the student's clock adds the members'."""
    import argparse

    from test_bench_accuracy import write_shape_zips

    from charlab.bench import accuracy
    from charlab.checkpoint import load_members

    monkeypatch.setenv("CHARLAB_CACHE_DIR", str(tmp_path / "cache"))
    write_shape_zips(tmp_path, 4)
    p = argparse.ArgumentParser()
    accuracy.add_arguments(p)
    args = p.parse_args(["--chars74k", str(tmp_path), "--members", "2", "--distill", "--epochs", "2",
                         "--compare", "none", "--distill-temperature", "2", "--keep", str(tmp_path / "runs")])
    out = accuracy.run(args)
    d = out["distilled"]
    assert d["teacher_members"] == 2 and d["distill_temperature"] == 2.0 and d["n_test"] == 12
    assert d["train_cpu_seconds"] == pytest.approx(d["student_train_cpu_seconds"] + out["ensemble"]["train_cpu_seconds"],
                                                   abs=0.11)
    assert len(load_members(tmp_path / "runs" / "teacher.pt")) == 2
    student, = (tmp_path / "runs").glob("*distill*")
    stored = json.loads((student / "config.json").read_text())
    assert stored["teacher"] == str(tmp_path / "runs" / "teacher.pt") and stored["distill_temperature"] == 2.0
    with pytest.raises(SystemExit, match="--distill needs --members"):
        accuracy.run(p.parse_args(["--chars74k", str(tmp_path), "--distill", "--epochs", "1", "--compare", "none"]))


def test_teachers_with_and_without_side_inputs(twins, tmp_path):
    """A side-input teacher gets the batch's side vector (its student, taught by it alone, tells
    the size twins apart as it does); an image-only teacher teaches a side-input student from the
    image alone; a side-input teacher cannot teach a run whose data has no side vector."""
    from charlab.config import DataConfig

    root, runs = twins

    def student(side, teacher, epochs=15):
        cfg = TrainConfig(data=DataConfig(source=str(root / "src"), val_fraction=0.25, side_inputs=side),
                          augment=AugmentConfig(), epochs=epochs, batch_size=8, lr=1e-2, patience=0, ema_decay=0.0,
                          monitor="elapsed_s", teacher=str(runs[teacher].run_dir / "best.pt"), distill_weight=1.0,
                          distill_temperature=1.0)
        return fit(cfg, None)

    assert student("box", "side").history[-1]["val_acc"] >= 0.9
    assert len(student("box", "plain", epochs=1).history) == 1
    with pytest.raises(CheckpointError, match="reads side inputs 'box'"):
        student(None, "side", epochs=1)
