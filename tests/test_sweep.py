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
    with pytest.raises(CharlabError, match="is a folder"):
        run_sweep("squares", 1, storage=str(tmp_path), base=_base(), root=tmp_path, splits=splits)
    with pytest.raises(CharlabError, match="cannot open sweep storage"):
        run_sweep("squares", 1, storage="nosuchdb://host/x", base=_base(), root=tmp_path, splits=splits)
    db = tmp_path / "old.db"
    run_sweep("squares", 1, storage=f"sqlite:///{db}", name="old", base=_base(epochs=1), root=tmp_path / "r",
              splits=splits)  # an old SQLite sweep still opens by its URL, but a bare path is taken for a journal
    with pytest.raises(CharlabError, match="is an SQLite database; open it as sqlite:///"):
        sweep_summary("old", str(db))
    with pytest.raises(CharlabError, match="workers"):
        run_sweep("squares", 1, workers=0, base=_base(), root=tmp_path, splits=splits)
    with pytest.raises(CharlabError, match="trials"):
        run_sweep("squares", 0, base=_base(), root=tmp_path, splits=splits)
    with pytest.raises(CharlabError, match="no sweep named"):
        sweep_summary("absent", f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(CharlabError, match="no sweep named 'absent': there is no sweep journal"):
        sweep_summary("absent", str(tmp_path / "none.journal"))
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


# --- sweeps that scale: worker processes against one study -------------------------------------

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from charlab.runs import list_runs
from tests.test_runs import wait_for

ROOT = Path(__file__).resolve().parents[1]
# Tiny trials: 10 digit classes of generated handwriting, one epoch, the recipe's own model size.
TINY = "synthetic:classes=digits,n=8,test_n=2"


def _sweep_cmd(*args: str, source: str = TINY) -> list[str]:
    return [sys.executable, "-m", "charlab", "sweep", "--source", source, "--no-model-options", *args]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "GOMP_SPINCOUNT": "0"}


def _running_trial(name: str, storage: str):
    """(number, run_dir) of a RUNNING trial that has its run directory, or None."""
    try:
        res = sweep_summary(name, storage)
    except CharlabError:  # the study does not exist yet
        return None
    return next(((t["number"], t["run_dir"]) for t in res.trials if t["state"] == "running" and t["run_dir"]), None)


def _assert_trials_are_runs(res, root: Path) -> None:
    """Every finished or failed trial is exactly one run directory the Runs page lists, none running."""
    runs = {str(r.run_dir): r for r in list_runs(root)}
    dirs = [t["run_dir"] for t in res.trials if t["state"] != "waiting"]
    assert len(set(dirs)) == len(dirs) and None not in dirs, "a trial without or sharing a run directory"
    assert sorted(t["number"] for t in res.trials) == list(range(len(res.trials)))  # none lost or duplicated
    for t in res.trials:
        info = runs[str(Path(t["run_dir"]).resolve())]
        assert info.sweep == res.name and info.status.get("trial") == t["number"]
        assert info.state == {"complete": "done", "pruned": "done", "fail": "failed"}[t["state"]], (t, info.state)


def test_workers_share_a_journal_and_a_killed_workers_trial_is_requeued(tmp_path):
    """`--workers 2` on the default storage (a journal file): trials add up, and a worker killed
    mid-trial leaves that trial failed and run again, its run directory failed (not running)."""
    storage, root = str(tmp_path / "sweeps.journal"), tmp_path / "runs"
    # trials of a few seconds (600 images, 5 epochs), so the kill lands mid-trial
    proc = subprocess.Popen(_sweep_cmd("--trials", "4", "--workers", "2", "--epochs", "5", "--name", "jw",
                                       "--storage", storage, "--root", str(root), "--json",
                                       source="synthetic:classes=digits,n=60,test_n=2"),
                            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        number, run_dir = wait_for(lambda: _running_trial("jw", storage), 60, "a running trial")
        from optuna import load_study

        from charlab.sweep import make_storage

        trial = next(t for t in load_study(study_name="jw", storage=make_storage(storage)).trials if t.number == number)
        victim = trial.user_attrs["worker"]["pid"]
        assert victim != proc.pid
        os.kill(victim, signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    res = sweep_summary("jw", storage)
    states = [t["state"] for t in res.trials]
    # the median pruner may stop a trial that trails the others: pruned is finished too
    assert states.count("fail") == 1 and len(states) == 5 and set(states) <= {"complete", "pruned", "fail"}, \
        [(t["number"], t["state"]) for t in res.trials]
    killed = next(t for t in res.trials if t["state"] == "fail")
    assert killed["number"] == number and killed["run_dir"] == run_dir
    retry = [t for t in res.trials if t["retry_of"] == number]
    assert len(retry) == 1 and retry[0]["state"] in ("complete", "pruned") and retry[0]["params"] == killed["params"]
    _assert_trials_are_runs(res, root)
    assert "died" in (list_runs(root) and next(r for r in list_runs(root) if str(r.run_dir) == run_dir).error_tail)


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    cands = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return cands[-1].parent if cands else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    """A real PostgreSQL server for this test: initdb into a temporary folder, started on a free
    local port (127.0.0.1, unix socket in the folder), one database; stopped and removed after.
    PostgreSQL refuses to run as root, so as root its programs run as the `postgres` user
    (Debian's package creates it) or `nobody`."""
    from tests.conftest import missing

    bindir = _pg_bin()
    if bindir is None:
        missing("PostgreSQL is not installed (initdb not found; .ci/run installs Debian's postgresql)")
    base = Path(tempfile.mkdtemp(prefix="charlab-pg-"))  # not under pytest's root-only tmp folder
    data, port = base / "data", _free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = "postgres" if _user_exists("postgres") else "nobody"
        shutil.chown(base, user)
        as_user = ["runuser", "-u", user, "--"]

    def pg(prog: str, *args: str) -> None:
        subprocess.run([*as_user, str(bindir / prog), *args], check=True, capture_output=True, timeout=60)

    try:
        pg("initdb", "-D", str(data), "-U", "charlab", "--auth=trust", "-E", "UTF8")
        pg("pg_ctl", "-D", str(data), "-l", str(base / "log"), "-w", "-t", "30", "start", "-o",
           f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off")
        try:
            pg("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "charlab", "sweeps")
            yield f"postgresql://charlab@127.0.0.1:{port}/sweeps"  # the URL a user types: psycopg2 by default
        finally:
            pg("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
    except subprocess.CalledProcessError as e:
        log = (base / "log").read_text()[-1500:] if (base / "log").exists() else ""
        pytest.fail(f"PostgreSQL did not start: {' '.join(e.cmd)}: {e.stderr.decode()[-800:]} {log}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def test_two_workers_on_postgresql_share_one_study(postgres, tmp_path):
    """Two worker processes (as on two machines) join one study on a real PostgreSQL server:
    their trials add up, each a run the Runs page lists. Then a worker killed mid-trial: its
    heartbeat stops, the next worker fails the trial and runs it again (Optuna's retry)."""
    root = tmp_path / "runs"
    common = ("--name", "pg", "--storage", postgres, "--root", str(root), "--heartbeat", "2", "--json")
    procs = [subprocess.Popen(_sweep_cmd("--trials", "2", "--epochs", "1", "--seed", str(seed), *common), cwd=ROOT,
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    for p in procs:
        out, err = p.communicate(timeout=150)
        assert p.returncode == 0, err[-2000:]
    res = sweep_summary("pg", postgres)
    assert len(res.trials) == 4 and all(t["state"] == "complete" for t in res.trials)
    assert len({json.dumps(t["params"], sort_keys=True) for t in res.trials}) == 4  # the workers sampled apart
    _assert_trials_are_runs(res, root)

    # A worker killed mid-trial: a trial on more images (3,000) and more epochs than the wait below
    # can see end (50 epochs of the tiny set ended early on a quiet machine: early stopping at
    # chance accuracy), SIGKILL once it trains.
    victim = subprocess.Popen(_sweep_cmd("--trials", "1", "--epochs", "500", "--seed", "3", *common,
                                         source="synthetic:classes=digits,n=300,test_n=2"), cwd=ROOT,
                              env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        number, run_dir = wait_for(lambda: _running_trial("pg", postgres), 90, "the victim's running trial")
        time.sleep(2.0)  # a heartbeat reaches the database
    finally:
        victim.kill()
        victim.wait()
    assert sweep_summary("pg", postgres).trials[number]["state"] == "running"  # what a dead worker leaves behind
    time.sleep(6.5)  # the grace period (3 heartbeats of 2 s) passes
    survivor = subprocess.run(_sweep_cmd("--trials", "1", "--epochs", "1", "--seed", "4", *common), cwd=ROOT,
                              env=_env(), capture_output=True, text=True, timeout=120)
    assert survivor.returncode == 0, survivor.stderr[-2000:]
    res = sweep_summary("pg", postgres)
    killed = res.trials[number]
    assert killed["state"] == "fail" and killed["run_dir"] == run_dir
    retry = [t for t in res.trials if t["retry_of"] == number]
    assert len(retry) == 1 and retry[0]["state"] in ("complete", "pruned") and retry[0]["params"] == killed["params"]
    assert len(res.trials) == 6  # 4 + the killed one + its retry, which the survivor's one trial was
    _assert_trials_are_runs(res, root)
