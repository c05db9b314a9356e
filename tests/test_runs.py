"""Run directories as separate OS processes: background launch that outlives its launcher,
the queue, STOP, SIGKILL + resume without a lost or duplicated metrics line, true states,
delete, and the `train` / `runs` CLI."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from charlab import runs
from charlab.config import TrainConfig, to_dict
from charlab.errors import RunError

from test_ddp import _shapes  # noqa: E402 - pytest puts tests/ on sys.path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def folder_source(tmp_path_factory) -> str:
    """A user's folder of PNGs, 4 classes × 40 (the shapes of test_ddp)."""
    return _shapes(tmp_path_factory.mktemp("shapes") / "data")


def config(source: str, epochs: int = 2, model: str = "lenet", **kw) -> TrainConfig:
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=3e-3, patience=0, device="cpu", **kw)
    cfg.data.source, cfg.model.name = source, model
    return cfg


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "charlab", *args], cwd=ROOT, env=ENV, capture_output=True,
                       text=True, timeout=300)
    if check:
        assert p.returncode == 0, p.stderr + p.stdout
    return p


def wait_for(pred, timeout: float = 180, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def epochs_of(run_dir: Path) -> list:
    return [r["epoch"] for r in runs.read_metrics(run_dir) if r.get("split", "train") == "train"]


LAUNCHER = """
import json, sys
from charlab import runs
from charlab.config import TrainConfig, from_dict
cfg = from_dict(TrainConfig, json.loads(sys.argv[2]))
infos = [runs.launch(cfg, sys.argv[1], max_parallel=1) for cfg.seed in (1, 2)]
print(json.dumps([[str(i.run_dir), i.state, i.queue_position] for i in infos]))
"""


@pytest.mark.slow  # ~25 s: two background runs, each its own python process
def test_background_runs_outlive_the_launcher_and_the_queue_starts_by_itself(tmp_path, folder_source):
    root = tmp_path / "runs"
    p = subprocess.run([sys.executable, "-c", LAUNCHER, str(root), json.dumps(to_dict(config(folder_source)))],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr  # the launcher has exited; its runs go on
    (a, a_state, _), (b, b_state, b_pos) = json.loads(p.stdout)
    assert a_state == "running" and (b_state, b_pos) == ("queued", 1)
    a, b = Path(a), Path(b)
    # listing only reads: the finishing trainer starts the queued run
    wait_for(lambda: all(i.state in ("done", "failed") for i in runs.list_runs(root)), 240, "both runs")
    infos = {i.run_dir: i for i in runs.list_runs(root)}
    assert infos[a].state == infos[b].state == "done", (runs.log_tail(a), runs.log_tail(b))
    assert runs.read_status(b)["started"] >= runs.read_status(a)["ended"] - 0.5  # one at a time
    for d in (a, b):
        assert epochs_of(d) == [1, 2] and (d / "best.pt").exists() and (d / "last.pt").exists()
        assert infos[d].best_val_acc is not None and infos[d].duration_s > 0
    assert a.name.split("-")[2] == "lenet"  # runs/<YYYYmmdd-HHMMSS>-<model>-<shortid>


@pytest.mark.slow  # ~35 s: a run stopped, resumed, killed with SIGKILL and resumed again
def test_stop_then_sigkill_then_resume_loses_and_repeats_no_metrics_line(tmp_path, folder_source):
    root = tmp_path / "runs"
    cfg = config(folder_source, epochs=8, model="kaggle_cnn")
    cfg.batch_size = 8  # many short steps: the stop and the kill land inside an epoch
    info = runs.launch(cfg, root)
    d = info.run_dir
    assert info.state == "running"
    wait_for(lambda: len(epochs_of(d)) >= 1, what="epoch 1")
    stopped = runs.stop_run(d, wait=90)
    assert stopped.state == "stopped", runs.log_tail(d)
    assert (d / "last.pt").exists() and not (d / "STOP").exists()
    with pytest.raises(RunError, match="stopped"):
        runs.stop_run(d)
    with pytest.raises(RunError, match="finished"):
        runs.resume_run(runs.create_run(cfg, root, state="done"))

    resumed = runs.resume_run(d.name, root)
    assert resumed.state == "running"
    n = len(epochs_of(d))
    wait_for(lambda: len(epochs_of(d)) >= n + 1, what="an epoch after the resume")
    time.sleep(0.3)  # somewhere inside the next epoch
    pid = runs.read_status(d)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: runs.run_info(d).state == "interrupted", 30, "interrupted")
    assert runs.read_status(d)["state"] == "running"  # the file still says running; the true state does not

    runs.resume_run(d, root)
    wait_for(lambda: runs.run_info(d).state in ("done", "failed"), what="the run to finish")
    assert runs.run_info(d).state == "done", runs.log_tail(d)
    rows = runs.read_metrics(d)
    assert epochs_of(d) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [r.get("split") for r in rows].count("test") == 0  # a folder source has no test split
    assert runs.run_info(d).epoch == 8


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_true_state_of_a_run_whose_process_died(tmp_path, folder_source):
    d = runs.create_run(config(folder_source), tmp_path / "runs", state="running")
    runs.update_status(d, pid=_dead_pid())
    assert runs.run_info(d).state == "interrupted"
    (d / "train.log").write_text("epoch 1/2 ...\nTraceback (most recent call last):\n  File \"x.py\"\n"
                                 "RuntimeError: out of memory\n")
    info = runs.run_info(d)
    assert info.state == "failed" and "RuntimeError: out of memory" in info.error_tail
    me = runs._proc_start(os.getpid())
    runs.update_status(d, pid=os.getpid(), pid_start="1", heartbeat=time.time())
    assert runs.run_info(d).state == "failed"  # the pid now names another process (a reused pid): not ours
    runs.update_status(d, pid_start=me, heartbeat=time.time() - 10 * runs.STALE_S)
    info = runs.run_info(d)  # the very process, alive, but silent: frozen (SIGSTOP, a stuck filesystem)
    assert info.state == "stalled" and info.alive and not info.can_resume and not info.can_delete
    runs.update_status(d, heartbeat=time.time(), progress_at=time.time())
    assert runs.run_info(d).state == "running"


def test_delete_refuses_a_running_run_and_removes_a_finished_one(tmp_path, folder_source):
    root = tmp_path / "runs"
    d = runs.create_run(config(folder_source), root, state="running")  # this process "trains" it
    with pytest.raises(RunError, match="stop it first"):
        runs.delete_run(d.name, root)
    runs.update_status(d, state="done")
    assert runs.delete_run(d.name, root) == d and not d.exists()
    with pytest.raises(RunError, match="not a run directory|no run"):
        runs.delete_run(tmp_path, root)  # a plain folder is never deleted


def test_resolve_run_by_dir_id_or_part_and_unknown_names_close_matches(tmp_path, folder_source):
    root = tmp_path / "runs"
    d = runs.create_run(config(folder_source), root, state="done")
    assert runs.resolve_run(d, root) == d == runs.resolve_run(d.name, root) == runs.resolve_run(d.name[-6:], root)
    with pytest.raises(RunError, match="did you mean " + d.name):
        runs.resolve_run(d.name[:-1] + "x", root)


@pytest.mark.slow  # ~25 s idle, ~60 s at load 12: six CLI processes, each importing torch
def test_cli_train_and_runs_smoke(tmp_path, folder_source):
    run_dir, root = tmp_path / "runs" / "smoke", tmp_path / "runs"
    out = json.loads(cli("train", "--source", folder_source, "--model", "lenet", "--epochs", "1", "--batch-size",
                         "32", "--run-dir", str(run_dir), "--json").stdout)
    assert out["state"] == "done" and out["epochs_run"] == 1
    rows = runs.read_metrics(run_dir)
    assert {"epoch", "train_loss", "val_loss", "val_acc", "val_macro_f1"} <= set(rows[0])
    assert json.loads((run_dir / "status.json").read_text())["state"] == "done" and (run_dir / "best.pt").exists()
    listed = json.loads(cli("runs", "list", "--root", str(root), "--json").stdout)
    assert [(r["run_dir"], r["state"], r["epoch"]) for r in listed] == [(str(run_dir), "done", 1)]
    assert listed[0]["best_val_acc"] == rows[0]["val_acc"]
    p = cli("runs", "stop", "smoke", "--root", str(root), check=False)
    assert p.returncode == 2 and "not running" in p.stderr
    cli("runs", "delete", "smoke", "--root", str(root))
    assert not run_dir.exists()
    bg = json.loads(cli("train", "--source", folder_source, "--model", "lenet", "--epochs", "1", "--root", str(root),
                        "--background", "--json").stdout)
    assert bg["state"] == "running"
    wait_for(lambda: runs.run_info(bg["run_dir"]).state != "running", what="the background run")
    assert runs.run_info(bg["run_dir"]).state == "done"
    runs.delete_run(bg["run_dir"])
    # a source that does not exist is refused before a run folder is made
    p = cli("train", "--source", str(tmp_path / "missing"), "--epochs", "1", "--root", str(root), check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr and runs.list_runs(root) == []
    # a failure inside the trainer ends `failed` with the reason, and the CLI says it without a traceback
    (tmp_path / "empty").mkdir()
    p = cli("train", "--source", str(tmp_path / "empty"), "--epochs", "1", "--root", str(root), check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "no usable image" in p.stderr
    (failed,) = runs.list_runs(root)
    assert failed.state == "failed" and "no usable image" in failed.error_tail
