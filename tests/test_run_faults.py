"""Runs that never lie, and the run store under faults: stalled trainers, another host's runs,
STOP races, resumes that cannot start, damaged files, bad references, a full disk, kill -9
during a checkpoint write, concurrent launches, and listing while runs train."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from charlab import io as cio
from charlab import runs
from charlab.__main__ import main
from charlab.config import TrainConfig
from charlab.errors import CharlabError, RunError

from test_app_pages import navigation_v2  # noqa: F401 - autouse: AppTest routes through app.py as the server does
from test_ddp import _shapes  # noqa: E402 - pytest puts tests/ on sys.path
from test_runs import wait_for

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def folder_source(tmp_path_factory) -> str:
    return _shapes(tmp_path_factory.mktemp("shapes") / "data")


def config(source: str = "synthetic", epochs: int = 2, model: str = "lenet", **kw) -> TrainConfig:
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=3e-3, patience=0, device="cpu", ema_decay=0.0, **kw)
    cfg.data.source, cfg.model.name = source, model
    return cfg


@pytest.fixture
def no_spawn(monkeypatch):
    """The queue's process starts, recorded instead of made (for tests of who starts what)."""
    spawned: list[Path] = []

    def spawn(run_dir, *, resume, cwd=None):
        spawned.append(Path(run_dir))
        return os.getpid()  # "the child" is this process: alive, as a fresh child would be

    monkeypatch.setattr(runs, "_spawn", spawn)
    return spawned


def cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


# -- true states -----------------------------------------------------------------------

def test_a_hung_trainer_shows_stalled_though_its_heartbeat_beats(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "HEARTBEAT_S", 0.05)
    monkeypatch.setenv("CHARLAB_STALL_S", "0.5")
    d = runs.create_run(config(), tmp_path / "runs", state="running")
    rec = runs.RunRecorder(d, config())
    try:
        first = runs.read_status(d)
        wait_for(lambda: runs.read_status(d)["heartbeat"] > first["heartbeat"] + 0.2, 10, "heartbeats")
        st = runs.read_status(d)
        assert st["progress_at"] == first["progress_at"]  # the heartbeat alone is no progress
        wait_for(lambda: runs.run_info(d).state == "stalled", 10, "stalled")
        info = runs.run_info(d)
        assert info.alive and info.last_progress == pytest.approx(first["progress_at"])
        assert info.can_stop and not info.can_resume and not info.can_delete
        with pytest.raises(RunError, match="still alive"):
            runs.resume_run(d)
        with pytest.raises(RunError, match="stalled"):
            runs.delete_run(d)
        rec.note_progress(step=1)  # a batch finished
        wait_for(lambda: runs.run_info(d).state == "running", 10, "running again")
    finally:
        rec.close()


def test_another_hosts_run_is_judged_by_its_heartbeat_live_and_stale(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CHARLAB_STALL_S", "60")
    root = tmp_path / "shared"
    d = runs.create_run(config(), root, state="running")
    now = time.time()
    # pid 1 exists here, but on the GPU box it is the trainer: the pid must not decide anything
    runs.update_status(d, host="gpu-box-7", pid=1, pid_start="12345", heartbeat=now, progress_at=now)
    live = runs.run_info(d)
    assert (live.state, live.foreign, live.alive) == ("running", True, True)
    assert live.can_stop and not live.can_resume and not live.can_delete
    monkeypatch.setenv("CHARLAB_RUNS", str(root))  # the CLI's default root
    rc, out, _ = cli(capsys, "runs", "list")
    assert rc == 0 and "running@gpu-box-7" in out and "judged by its heartbeat" in out

    runs.update_status(d, progress_at=now - 120)  # beating, but no batch for 2 minutes
    assert runs.run_info(d).state == "stalled"
    rc, out, _ = cli(capsys, "runs", "show", d.name)
    assert "stalled@gpu-box-7" in out and "finished no batch since 2m ago" in out

    runs.update_status(d, heartbeat=now - 10 * runs.STALE_S)  # the host went away
    stale = runs.run_info(d)
    assert (stale.state, stale.alive) == ("interrupted", False) and stale.can_resume and stale.can_delete
    # a dead pid on another host that is still beating is alive all the same
    runs.update_status(d, pid=2 ** 22 + 17, heartbeat=time.time(), progress_at=time.time())
    assert runs.run_info(d).state == "running"


def test_runs_of_the_earlier_release_still_load(tmp_path):
    """status.json without host, pid_start or progress_at (written before this release)."""
    d = tmp_path / "runs" / "20261101-120000-lenet-abcdef"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"epochs": 3, "model": {"name": "lenet"}}))
    old = {"state": "running", "pid": os.getpid(), "epoch": 1, "epochs": 3, "heartbeat": time.time(),
           "created": time.time() - 60, "source": "synthetic", "model": "lenet"}
    (d / "status.json").write_text(json.dumps(old))
    info = runs.run_info(d)
    assert (info.state, info.foreign, info.host) == ("running", False, None)
    (d / "status.json").write_text(json.dumps({**old, "heartbeat": time.time() - 10 * runs.STALE_S}))
    info = runs.run_info(d)  # silent, but its pid lives: frozen (or reused) - never a second writer
    assert info.state == "stalled" and info.alive and not info.can_resume and not info.can_delete
    (d / "status.json").write_text(json.dumps({**old, "pid": 2 ** 22 + 17}))
    assert runs.run_info(d).state == "interrupted" and runs.run_info(d).can_resume
    (d / "status.json").write_text(json.dumps({**old, "state": "done", "pid": 1}))
    info = runs.run_info(d)
    assert info.state == "done" and not info.alive and info.can_delete and info.can_resume is False
    assert runs.read_config(d).epochs == 3


def test_listing_never_starts_a_process_and_an_unreadable_status_is_failed_not_queued(tmp_path, no_spawn, capsys):
    root = tmp_path / "runs"
    q = runs.create_run(config(), root, state="queued")
    broken = runs.create_run(config(), root, state="done")
    (broken / "status.json").write_text('{"state": "done", "pid"')  # damaged by hand or a bad disk
    for _ in range(3):
        infos = {i.run_dir: i for i in runs.list_runs(root)}
    assert no_spawn == [] and infos[q].state == "queued" and infos[q].queue_position == 1
    assert infos[q].can_stop and infos[q].can_delete and not infos[q].can_resume  # no process yet
    b = infos[broken]
    assert b.state == "failed" and b.unreadable and "status.json is unreadable" in b.error_tail
    assert not b.can_resume and b.can_delete
    rc, out, _ = cli(capsys, "runs", "list", "--root", str(root))
    assert rc == 0 and "status.json is unreadable" in out and no_spawn == []
    assert "nothing trains" in out and "runs kick" in out  # the queued run waits on a trainer that is not there
    rc, out, _ = cli(capsys, "runs", "kick", "--root", str(root))  # asked for: the queue starts, never the damaged run
    assert rc == 0 and no_spawn == [q] and f"started {q.name}" in out


def test_a_stop_sent_before_the_child_starts_is_kept(tmp_path, no_spawn):
    root = tmp_path / "runs"
    info = runs.launch(config(), root)  # the queue marks it running and "starts" the child
    d = info.run_dir
    assert no_spawn == [d] and info.state == "running"
    assert runs.stop_run(d).state == "running" and (d / "STOP").exists()
    rec = runs.RunRecorder(d, config())  # the child starts: pid == its own, the queue claimed it for it
    try:
        assert (d / "STOP").exists() and runs.RunDir(d).stop_requested()
    finally:
        rec.close()
    # a foreground resume claims the run itself: a STOP left from an earlier life is stale
    runs.update_status(d, state="stopped", pid=None)
    runs.RunDir(d).request_stop("old")
    rec = runs.RunRecorder(d, config(), resume=True)
    rec.close()
    assert not (d / "STOP").exists()


# -- resume that cannot start --------------------------------------------------------------

def _stopped_run_with_last(root: Path, model: str = "lenet") -> Path:
    from charlab.checkpoint import save_checkpoint
    from charlab.models import create_model

    cfg = config(model=model)
    d = runs.create_run(cfg, root, state="stopped")
    net = create_model(model, num_classes=4, in_chans=1, image_size=(28, 28))
    save_checkpoint(d / "last.pt", net, cfg, list("abcd"), (28, 28), epoch=1)
    return d


def test_a_resume_that_cannot_start_says_why_in_one_line_before_claiming_anything(tmp_path, no_spawn, capsys):
    root = tmp_path / "runs"
    d = _stopped_run_with_last(root)
    before = runs.read_status(d)
    cases = {
        "corrupt": ('{"epochs": 3, "model": {"name": ', "not valid JSON"),
        "a list": ("[1, 2, 3]", "not a config object"),
        "another architecture": (None, "asks for a kaggle_cnn but last.pt holds a lenet"),
        "wrong field type": (None, "not a valid config"),
    }
    good = (d / "config.json").read_text()
    for what, (text, message) in cases.items():
        if what == "another architecture":
            text = good.replace('"name": "lenet"', '"name": "kaggle_cnn"')
        if what == "wrong field type":
            text = good.replace('"epochs": 2', '"epochs": "many"')
        (d / "config.json").write_text(text)
        rc, out, err = cli(capsys, "runs", "resume", d.name, "--root", str(root))
        assert rc == 2 and out == "" and message in err, (what, err)
        assert err.count("\n") == 1 and "Traceback" not in err and len(err) < 400, (what, err)
        assert runs.read_status(d) == before and no_spawn == []  # neither queued nor running
    (d / "config.json").write_text(good)
    (d / "last.pt").write_bytes((d / "last.pt").read_bytes()[:300])  # truncated
    rc, _, err = cli(capsys, "runs", "resume", d.name, "--root", str(root))
    assert rc == 2 and "not a readable charlab checkpoint" in err and no_spawn == []
    # the trainer's own door (train --resume) checks the same before it does any work
    rc, _, err = cli(capsys, "train", "--resume", "--run-dir", str(d))
    assert rc == 2 and "cannot resume" in err and runs.read_status(d)["state"] == "stopped"


def test_a_trainer_started_by_the_queue_that_cannot_begin_ends_failed_with_the_reason(tmp_path, no_spawn, capsys):
    root = tmp_path / "runs"
    d = _stopped_run_with_last(root)
    runs.resume_run(d)  # checked, queued, "started" (the child is this process)
    assert runs.run_info(d).state == "running"
    (d / "config.json").write_text("{")  # damaged after the queue claimed it
    rc, _, err = cli(capsys, "train", "--config", str(d / "config.json"), "--run-dir", str(d), "--resume")
    info = runs.run_info(d)
    assert rc == 2 and info.state == "failed" and "not valid JSON" in info.error_tail


# -- bad references and folders ------------------------------------------------------------

def test_bad_run_references_and_folders_are_refused_with_one_line(tmp_path, capsys, folder_source):
    root = tmp_path / "runs"
    d = runs.create_run(config(), root, state="done")
    for ref in ("", "  ", "\t"):
        rc, _, err = cli(capsys, "runs", "delete", ref, "--root", str(root))
        assert rc == 2 and "empty run name" in err and d.exists()
    rc, _, err = cli(capsys, "runs", "delete", "-", "--root", str(root))  # too short to be a part of an id
    assert rc == 2 and d.exists()
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    for args in (("runs", "list", "--root", str(a_file)), ("runs", "show", "x", "--root", str(a_file)),
                 ("train", "--source", folder_source, "--epochs", "1", "--root", str(a_file)),
                 ("train", "--source", folder_source, "--epochs", "1", "--run-dir", str(a_file))):
        rc, _, err = cli(capsys, *args)
        assert rc == 2 and "is a file" in err and err.count("\n") == 1, (args, err)
    assert a_file.read_text() == "mine"
    # a folder of another tool's files is never written into, its best.pt never replaced
    foreign = tmp_path / "their_project"
    foreign.mkdir()
    (foreign / "best.pt").write_bytes(b"another tool's weights")
    (foreign / "README").write_text("theirs")
    for extra in ((), ("--background",)):
        rc, _, err = cli(capsys, "train", "--source", folder_source, "--epochs", "1", "--run-dir", str(foreign),
                         *extra)
        assert rc == 2 and "not a run" in err, err
        assert sorted(p.name for p in foreign.iterdir()) == ["README", "best.pt"]
        assert (foreign / "best.pt").read_bytes() == b"another tool's weights"


def test_runs_list_piped_into_a_closed_pipe_ends_quietly(tmp_path):
    root = tmp_path / "runs"
    for _ in range(30):
        runs.create_run(config(), root, state="done")
    p = subprocess.Popen([sys.executable, "-m", "charlab", "runs", "list", "--root", str(root)], cwd=ROOT, env=ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # `| head -0`: the reader is gone before the first line
    err = p.stderr.read().decode()
    assert p.wait(60) != 0 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_runs_list_and_show_import_no_torch(tmp_path):
    from charlab.bench.cli import _imports_torch

    root = tmp_path / "runs"
    d = runs.create_run(config(), root, state="done")
    for args in (("list",), ("show", d.name)):
        cmd = [sys.executable, "-m", "charlab", "runs", *args, "--root", str(root)]
        assert subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, timeout=120).returncode == 0
        assert not _imports_torch(cmd), args
    assert _imports_torch([sys.executable, "-c", "import charlab.models"])  # the check can see torch


# -- writes --------------------------------------------------------------------------------

def test_atomic_writes_respect_the_umask_and_fsync_the_folder(tmp_path, monkeypatch):
    synced = []
    real = cio.fsync_dir
    monkeypatch.setattr(cio, "fsync_dir", lambda folder: (synced.append(Path(folder)), real(folder)))
    old = os.umask(0o022)
    try:
        cio.atomic_write_json(tmp_path / "a.json", {"x": 1})
        os.umask(0o077)
        cio.atomic_write_json(tmp_path / "b.json", {"x": 2})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o600
    assert synced == [tmp_path, tmp_path]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_appends_loop_on_short_writes_and_a_full_disk_loses_no_line(tmp_path, monkeypatch):
    log = tmp_path / "metrics.jsonl"
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, bytes(data[:3])))  # 3 bytes per call at most
    cio.append_jsonl(log, {"epoch": 1, "val_acc": 0.5})
    cio.append_jsonl(log, {"epoch": 2, "val_acc": 0.6})
    assert cio.read_jsonl(log) == [{"epoch": 1, "val_acc": 0.5}, {"epoch": 2, "val_acc": 0.6}]
    before = log.read_bytes()

    def full(fd, data):  # half the line reaches the disk, then it is full
        real(fd, bytes(data[:len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(CharlabError, match="disk full while appending"):
        cio.append_jsonl(log, {"epoch": 3, "val_acc": 0.7})
    assert log.read_bytes() == before  # cut back: no half line for the next append to glue onto


def test_a_corrupt_middle_line_is_reported_and_a_torn_last_line_dropped_silently(tmp_path, capsys):
    d = runs.create_run(config(), tmp_path / "runs", state="done")
    rows = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.0, "val_acc": 0.1 * e} for e in (1, 2, 3)]
    lines = [json.dumps(r) for r in rows]
    (d / "metrics.jsonl").write_text(lines[0] + "\n" + '{"epoch": 2, "train_lo\x00ss' + "\n" + lines[2] + "\n"
                                     + '{"epoch": 4, "tra')
    got, bad = runs.read_metrics_checked(d)
    assert got == [rows[0], rows[2]] and bad == [2]  # line 2 reported; the torn line 4 not
    assert runs.read_metrics(d) == [rows[0], rows[2]]
    rc, out, _ = cli(capsys, "runs", "show", str(d))
    assert rc == 0 and "line(s) 2 are corrupt and were skipped" in out


# -- faults with a real trainer ------------------------------------------------------------

def test_a_full_disk_during_a_metrics_append_fails_the_run_clearly_and_loses_no_line(tmp_path, monkeypatch,
                                                                                       capsys, folder_source):
    real = os.write

    def write(fd, data):
        if b'"epoch": 2' in bytes(data) and b"train_loss" in bytes(data):
            real(fd, bytes(data[:10]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)
    d = tmp_path / "runs" / "full"
    rc, _, err = cli(capsys, "train", "--source", folder_source, "--model", "lenet", "--epochs", "3",
                     "--batch-size", "32", "--run-dir", str(d))
    assert rc == 2 and "disk full while appending" in err and "Traceback" not in err
    info = runs.run_info(d)
    assert info.state == "failed" and "disk full" in info.error_tail
    assert (d / "metrics.jsonl").read_bytes().endswith(b"\n")
    assert [r["epoch"] for r in runs.read_metrics_checked(d)[0]] == [1] and runs.read_metrics_checked(d)[1] == []


KILL_DURING_SAVE = r"""
import sys, time
from pathlib import Path
import charlab.io as cio
real, marker, saves = cio.atomic_write, Path(sys.argv[2]), []
def atomic_write(path, write):
    if Path(path).name == "last.pt":
        saves.append(path)
        if len(saves) == 2:  # the second last.pt: half of it on disk, then the process is killed
            import io
            buf = io.BytesIO(); write(buf); data = buf.getvalue()
            def half(f):
                f.write(data[: len(data) // 2]); f.flush(); marker.touch(); time.sleep(120)
            return real(path, half)
    return real(path, write)
cio.atomic_write = atomic_write
from charlab.__main__ import main
sys.exit(main(["train", "--source", sys.argv[3], "--model", "lenet", "--epochs", "4", "--batch-size", "32",
               "--run-dir", sys.argv[1]]))
"""


def test_kill_9_while_a_checkpoint_is_written_leaves_the_previous_last_pt(tmp_path, folder_source):
    from charlab.checkpoint import load_checkpoint

    d, marker = tmp_path / "runs" / "killed", tmp_path / "writing"
    p = subprocess.Popen([sys.executable, "-c", KILL_DURING_SAVE, str(d), str(marker), folder_source], cwd=ROOT,
                         env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: marker.exists() or p.poll() is not None, 180, "the second last.pt write")
        assert p.poll() is None, p.stderr.read().decode()
        os.kill(p.pid, signal.SIGKILL)
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
    assert list(d.glob(".last.pt.*.tmp"))  # the torn write is there, beside the intact file
    ck = load_checkpoint(d / "last.pt")
    assert ck.epoch == 1
    assert runs.run_info(d).state == "interrupted"
    assert runs.check_resumable(d).model.name == "lenet"  # and a resume would start from it


LAUNCH_AT = r"""
import json, os, subprocess, sys, time
from charlab import runs
from charlab.config import TrainConfig
def spawn(run_dir, *, resume, cwd=None):  # a real process per start, logged, so a double start shows
    with open(sys.argv[3], "a") as f:
        f.write(str(run_dir) + "\n")
    return subprocess.Popen(["sleep", "60"], start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL).pid
runs._spawn = spawn
cfg = TrainConfig(epochs=1)
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # both sessions click Launch at the same instant
info = runs.launch(cfg, sys.argv[1], max_parallel=int(sys.argv[4]))
print(json.dumps([str(info.run_dir), info.state]))
"""


@pytest.mark.parametrize("max_parallel", [1, 2])
def test_two_sessions_launching_at_once_make_two_runs_and_no_duplicate_start(tmp_path, max_parallel):
    root, log = tmp_path / "runs", tmp_path / "spawned.log"
    at = time.time() + 2.0
    procs = [subprocess.Popen([sys.executable, "-c", LAUNCH_AT, str(root), str(at), str(log), str(max_parallel)],
                              cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    launched = [json.loads(o) for o, _ in outs]
    infos = runs.list_runs(root)
    try:
        assert len({d for d, _ in launched}) == 2 and len(infos) == 2
        started = log.read_text().split()
        assert len(started) == len(set(started)) == max_parallel  # each start once, at most max_parallel
        states = sorted(i.state for i in infos)
        assert states == (["queued", "running"] if max_parallel == 1 else ["running", "running"])
    finally:
        for i in infos:
            if i.pid and i.is_training:
                os.killpg(i.pid, signal.SIGKILL)


def test_twenty_runs_listed_while_two_train_and_a_sigstopped_trainer_shows_stalled(tmp_path, monkeypatch,
                                                                                   folder_source):
    root = tmp_path / "runs"
    for k in range(18):
        d = runs.create_run(config(folder_source), root, state="done")
        runs.update_status(d, epoch=2, best_metrics={"val_acc": 0.5 + k / 100})
    cfg = config(folder_source, epochs=200, model="lenet")
    cfg.batch_size = 8
    a = runs.launch(cfg, root, max_parallel=2).run_dir
    b = runs.launch(cfg, root, max_parallel=2).run_dir
    try:
        wait_for(lambda: all(runs.read_metrics(x) for x in (a, b)), 180, "both trainers' first epochs")
        times = []
        for _ in range(10):
            t0 = time.perf_counter()
            infos = runs.list_runs(root)
            times.append(time.perf_counter() - t0)
        assert len(infos) == 20 and sorted(i.state for i in infos).count("running") == 2
        times.sort()
        print(f"\nlist_runs over 20 runs while 2 train: median {times[5] * 1000:.1f} ms, "
              f"max {times[-1] * 1000:.1f} ms")

        monkeypatch.setenv("CHARLAB_STALL_S", "10")  # (at least two 5-s heartbeats: see runs.stall_s)
        pid = runs.read_status(a)["pid"]
        os.kill(pid, signal.SIGSTOP)
        try:
            stalled = wait_for(lambda: (lambda i: i if i.state == "stalled" else None)(runs.run_info(a)), 30,
                               "stalled")
            assert time.time() - stalled.last_progress > 10 and stalled.alive
            assert not stalled.can_resume and not stalled.can_delete and stalled.can_stop
            assert runs.run_info(b).state == "running"
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: runs.run_info(a).state == "running", 30, "running again after SIGCONT")
    finally:
        for x in (a, b):
            if runs.run_info(x).is_active:
                runs.stop_run(x, wait=60)
    assert runs.run_info(a).state == runs.run_info(b).state == "stopped"


# -- the Runs page ---------------------------------------------------------------------------

def test_the_runs_page_shows_stalled_foreign_damaged_and_asks_runinfo_for_its_buttons(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from app_fixtures import make_checkpoint, make_finished_run
    from test_app_pages import ok, open_app

    monkeypatch.setenv("CHARLAB_STALL_S", "60")
    home = tmp_path / "lab"
    ckpt = make_checkpoint(home / "checkpoints" / "default.pt")
    root = home / "runs"
    damaged = make_finished_run(root, ckpt, state="stopped")
    lines = (damaged / "metrics.jsonl").read_text().splitlines()
    (damaged / "metrics.jsonl").write_text("\n".join([lines[0], '{"epoch": 2, "trai', lines[2]]) + "\n")
    now = time.time()
    stalled = runs.create_run(config(), root, state="running")  # this process "trains" it, and hangs
    runs.update_status(stalled, heartbeat=now, progress_at=now - 600)
    far = runs.create_run(config(), root, state="running")
    runs.update_status(far, host="gpu-box-7", pid=1, pid_start=None, heartbeat=now, progress_at=now)
    broken = runs.create_run(config(), root, state="done")
    (broken / "status.json").write_text("{")
    lab = SimpleNamespace(home=home, ckpt=ckpt, runs_root=root, drawings=home / "drawings")
    at = open_app(lab, "runs")
    ok(at)
    at.multiselect(key="runs_sel").set_value([damaged.name, stalled.name]).run()
    ok(at)
    warnings = " ".join(w.value for w in at.warning)
    assert f"{stalled.name}** is stalled" in warnings and "finished no batch since" in warnings
    assert "Corrupt lines in metrics.jsonl" in warnings and "(line 2)" in warnings
    assert any("gpu-box-7" in c.value for c in at.caption)
    assert any("status.json is unreadable" in e.value for e in at.error)
    assert set(runs.STATE_ICON) == set(runs.STATES) | {runs.STALLED}  # every state drawn, none invented
    states = {row["run"]: row["state"] for row in at.dataframe[0].value.to_dict("records")}
    assert states[stalled.name].endswith("stalled") and states[far.name].endswith("running @ gpu-box-7")
    assert states[broken.name].endswith("failed")
    for run_dir, stop, resume, delete in ((stalled, True, False, False), (far, True, False, False),
                                          (broken, False, False, True), (damaged, False, True, True)):
        at.selectbox(key="runs_manage").set_value(run_dir.name).run()
        info = runs.run_info(run_dir)
        assert (info.can_stop, info.can_resume, info.can_delete) == (stop, resume, delete), run_dir.name
        assert at.button(key="runs_stop").disabled is not stop
        assert at.button(key="runs_resume").disabled is not resume
        assert at.checkbox(key="runs_confirm").disabled is not delete


def test_a_queue_whose_trainer_died_is_started_from_the_runs_page_on_request_only(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from app_fixtures import make_checkpoint
    from test_app_pages import ok, open_app

    home = tmp_path / "lab"
    root = home / "runs"
    ckpt = make_checkpoint(home / "checkpoints" / "default.pt")
    q = runs.create_run(config(), root, state="queued")
    kicked = []
    monkeypatch.setattr(runs, "kick_queue", lambda r, *a, **k: kicked.append(Path(r)))
    monkeypatch.setattr(runs, "_spawn", lambda *a, **k: pytest.fail("a page render started a trainer"))
    lab = SimpleNamespace(home=home, ckpt=ckpt, runs_root=root, drawings=home / "d")
    at = open_app(lab, "runs")
    ok(at)
    assert any("nothing trains" in w.value for w in at.warning) and kicked == []
    assert runs.run_info(q).state == "queued"
    at.button(key="runs_kick").click().run()
    ok(at)
    assert kicked == [root]
