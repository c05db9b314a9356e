"""Run directories: create, launch in the background, queue, list, stop, resume, delete.

One directory per run (see DESIGN.md):

    runs/<YYYYmmdd-HHMMSS>-<model>-<shortid>/
      config.json    the full TrainConfig, written once
      status.json    {state, pid, epoch, epochs, best, best_epoch, heartbeat, ...}, replaced atomically
      metrics.jsonl  one JSON object per epoch, append-only (+ a final {"split": "test"} row)
      best.pt last.pt train.log STOP

The training process is the only writer of a running run's files; everybody else (the
app, `runs list`) reads them and derives the TRUE state: a status that says `running`
while its process is gone or its heartbeat is stale is shown `interrupted`, or `failed`
with the traceback from train.log. Launching, stopping and deleting queued runs take a
lock file in the root, so two launchers never start the same queued run twice.
"""
from __future__ import annotations

import difflib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Union

from .config import TrainConfig, from_dict, to_dict
from .errors import CharlabError, RunError
from .io import append_jsonl, atomic_write_bytes, atomic_write_json, read_jsonl, repair_jsonl

STATES = ("queued", "running", "done", "failed", "stopped", "interrupted")
HEARTBEAT_S = 5.0  # the trainer rewrites status.json this often
STALE_S = 120.0  # a 'running' status without a heartbeat for this long belongs to a dead or frozen process
CONFIG, STATUS, METRICS, BEST, LAST, LOG, STOP = (
    "config.json", "status.json", "metrics.jsonl", "best.pt", "last.pt", "train.log", "STOP")
_LOCK = ".queue.lock"

RunRef = Union[str, os.PathLike, "RunInfo"]


@dataclass
class RunInfo:
    run_dir: Path
    id: str
    state: str  # the TRUE state (see module doc), not necessarily what status.json says
    epoch: int  # epochs completed
    epochs: int  # epochs asked for
    best_val_acc: Optional[float]  # val_acc of the best epoch (the one in best.pt)
    best_val_macro_f1: Optional[float]  # val_macro_f1 of the best epoch
    duration_s: Optional[float]  # training time so far, across resumes
    source: str
    model: str
    created: float  # unix time
    queue_position: Optional[int] = None  # 1 = next to start; None unless queued
    pid: Optional[int] = None
    best_epoch: int = 0
    error_tail: Optional[str] = None
    test_metrics: Optional[dict] = None
    sweep: Optional[str] = None
    status: dict = field(default_factory=dict, repr=False)  # status.json as written

    def to_dict(self) -> dict:
        d = asdict(self)
        d["run_dir"] = str(self.run_dir)
        return d


# -- reading ---------------------------------------------------------------------------

def read_status(run_dir: str | os.PathLike) -> dict:
    """status.json as a dict; {} when absent or unreadable (it is replaced atomically, so
    unreadable means someone else's file, not a torn one)."""
    try:
        st = json.loads((Path(run_dir) / STATUS).read_text())
    except (OSError, ValueError):
        return {}
    return st if isinstance(st, dict) else {}


def read_metrics(run_dir: RunRef) -> list[dict]:
    """The metrics rows, oldest first; a torn last line (a writer killed mid-write) is skipped."""
    return read_jsonl(_dir_of(run_dir) / METRICS)


def read_config(run_dir: RunRef) -> TrainConfig:
    p = _dir_of(run_dir) / CONFIG
    try:
        return from_dict(TrainConfig, json.loads(p.read_text()))
    except FileNotFoundError:
        raise RunError(f"{p.parent} is not a run directory (no {CONFIG})") from None
    except ValueError as e:
        raise RunError(f"{p} is not valid JSON: {e}") from None


def _pid_alive(pid: Optional[int]) -> bool:
    if not pid:
        return False
    try:  # reap it if it is our own finished child, else it lingers as a zombie that "exists"
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except (ChildProcessError, OSError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (dead, not yet reaped by a parent that is not us) is not running
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):
        return True


def log_tail(run_dir: str | os.PathLike, lines: int = 25) -> str:
    p = Path(run_dir) / LOG
    try:
        with open(p, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    text = text.replace("\r", "\n")  # tqdm redraws with carriage returns
    return "\n".join([ln for ln in text.splitlines() if ln.strip()][-lines:])


def _traceback_tail(tail: str) -> Optional[str]:
    i = tail.rfind("Traceback (most recent call last)")
    return tail[i:] if i >= 0 else None


def true_state(status: dict, run_dir: Path, now: Optional[float] = None) -> tuple[str, Optional[str]]:
    """(state, error_tail): what is really going on, whatever status.json last said."""
    state = status.get("state") or "queued"
    if state != "running":
        return state, status.get("error_tail")
    now = time.time() if now is None else now
    alive = _pid_alive(status.get("pid"))
    fresh = now - float(status.get("heartbeat") or 0) < STALE_S
    if alive and fresh:
        return "running", None
    tb = _traceback_tail(log_tail(run_dir, 40))
    return ("failed", tb) if tb and not alive else ("interrupted", None)


def run_info(run_dir: RunRef) -> RunInfo:
    """The run's RunInfo with its true state (and its place in the queue when queued)."""
    info = _info(_dir_of(run_dir))
    if info.state == "queued":
        queued = sorted((i for i in map(_info, _run_dirs(info.run_dir.parent)) if i.state == "queued"),
                        key=_queue_key)
        info.queue_position = next((n for n, i in enumerate(queued, 1) if i.run_dir == info.run_dir), None)
    return info


def _info(d: Path) -> RunInfo:
    st = read_status(d)
    state, err = true_state(st, d)
    best = st.get("best_metrics") or {}
    return RunInfo(run_dir=d, id=d.name, state=state, epoch=int(st.get("epoch") or 0),
                   epochs=int(st.get("epochs") or 0), best_val_acc=best.get("val_acc"),
                   best_val_macro_f1=best.get("val_macro_f1"), duration_s=st.get("elapsed_s"),
                   source=st.get("source", ""), model=st.get("model", ""), created=float(st.get("created") or 0),
                   pid=st.get("pid"),
                   best_epoch=int(st.get("best_epoch") or 0), error_tail=err, test_metrics=st.get("test_metrics"),
                   sweep=st.get("sweep"), status=st)


def _run_dirs(root: str | os.PathLike) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        return []
    return [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / STATUS).exists()]


def list_runs(root: str | os.PathLike = "runs", *, kick: bool = True) -> list[RunInfo]:
    """Every run under `root`, newest first, with its true state. Starts queued runs
    first when slots are free (`kick`), so a queue whose trainer crashed still drains."""
    if kick:
        kick_queue(root)
    infos = [_info(d) for d in _run_dirs(root)]
    queued = sorted((i for i in infos if i.state == "queued"), key=_queue_key)
    for pos, info in enumerate(queued, 1):
        info.queue_position = pos
    return sorted(infos, key=lambda i: (i.created, i.id), reverse=True)


def _queue_key(info: RunInfo) -> tuple:
    return (float(info.status.get("queued_at") or info.created), info.id)


# -- resolving a reference -----------------------------------------------------------

def _dir_of(ref: RunRef) -> Path:
    return ref.run_dir if isinstance(ref, RunInfo) else Path(ref)


def resolve_run(ref: RunRef, root: str | os.PathLike = "runs") -> Path:
    """A run directory, or a run id (or a unique part of one) under `root`."""
    if isinstance(ref, RunInfo):
        return ref.run_dir
    p = Path(ref)
    if p.is_dir() and ((p / STATUS).exists() or (p / CONFIG).exists()):
        return p.resolve()
    ids = sorted(d.name for d in _run_dirs(root))
    if str(ref) in ids:
        return (Path(root) / str(ref)).resolve()
    hits = [i for i in ids if str(ref) in i]
    if len(hits) == 1:
        return (Path(root) / hits[0]).resolve()
    if len(hits) > 1:
        raise RunError(f"{str(ref)!r} matches several runs under {root}: {', '.join(hits[:10])}")
    close = difflib.get_close_matches(str(ref), ids, n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else (
        f"; runs there: {', '.join(ids[-5:])}" if ids else f"; {root} holds no runs")
    raise RunError(f"no run {str(ref)!r} (neither a run directory nor a run id under {root}){hint}")


# -- creating and writing ------------------------------------------------------------

def new_run_id(model: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", model) or "model"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}-{secrets.token_hex(3)}"


def _base_status(config: TrainConfig) -> dict:
    return {"state": "queued", "pid": None, "epoch": 0, "epochs": config.epochs, "best": None, "best_epoch": 0,
            "best_metrics": None, "monitor": config.monitor, "heartbeat": None, "created": time.time(),
            "queued_at": None, "started": None, "ended": None, "elapsed_s": None, "error_tail": None,
            "source": config.data.source, "model": config.model.name,
            "cwd": os.getcwd()}  # relative paths in the config (source, init_from) mean what they meant here


def create_run(config: TrainConfig, root: str | os.PathLike = "runs", *, run_dir: str | os.PathLike | None = None,
               state: str = "queued", sweep: Optional[str] = None, max_parallel: int = 1) -> Path:
    """Make a run directory with config.json (written once) and status.json. A `queued`
    run is started by the queue (`launch`/`kick_queue`); the foreground trainer creates
    its own directory as `running`."""
    config.validate()
    d = Path(run_dir) if run_dir is not None else Path(root) / new_run_id(config.model.name)
    if (d / CONFIG).exists():
        raise RunError(f"{d} already holds a run; resume it (python -m charlab runs resume {d}) or pick another --run-dir")
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_json(d / CONFIG, to_dict(config))
    st = _base_status(config)
    st.update(state=state, queued_at=time.time() if state == "queued" else None, max_parallel=max_parallel)
    if state == "running":
        st.update(pid=os.getpid(), heartbeat=time.time(), started=time.time())
    if sweep is not None:
        st["sweep"] = sweep
    atomic_write_json(d / STATUS, st)
    return d.resolve()


def update_status(run_dir: str | os.PathLike, **changes) -> dict:
    """Read-modify-write status.json (for the launcher side; the trainer uses RunRecorder)."""
    st = read_status(run_dir)
    st.update(changes)
    atomic_write_json(Path(run_dir) / STATUS, st)
    return st


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def truncate_metrics(run_dir: str | os.PathLike, last_epoch: int) -> int:
    """Keep the epoch rows up to `last_epoch` (what last.pt holds) and drop the rest (rows
    written after that checkpoint, a final test row, a torn line), so a resumed run
    appends each epoch exactly once. Returns the number of rows dropped."""
    p = Path(run_dir) / METRICS
    if not p.exists():
        return 0
    repair_jsonl(p)
    rows = read_jsonl(p)
    keep = [r for r in rows if r.get("split", "train") == "train" and int(r.get("epoch", 0)) <= last_epoch]
    if len(keep) != len(rows):
        atomic_write_bytes(p, "".join(json.dumps(r) + "\n" for r in keep).encode())
    return len(rows) - len(keep)


class RunRecorder:
    """The training process's handle on its run directory: status with a heartbeat
    thread, the metrics log, the checkpoint paths, the STOP file. Only rank 0 has one."""

    def __init__(self, run_dir: str | os.PathLike, config: TrainConfig, *, resume: bool = False):
        self.dir = Path(run_dir).resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path, self.best_path, self.last_path = self.dir / METRICS, self.dir / BEST, self.dir / LAST
        self.stop_path = self.dir / STOP
        if not (self.dir / CONFIG).exists():
            atomic_write_json(self.dir / CONFIG, to_dict(config))
        elif not resume and (read_jsonl(self.metrics_path) or self.last_path.exists()):
            raise RunError(f"{self.dir} already holds a trained run; resume it "
                           f"(python -m charlab runs resume {self.dir}) or pick another --run-dir")
        st = read_status(self.dir) or _base_status(config)
        other = st.get("pid")
        if st.get("state") == "running" and other not in (None, os.getpid()) and _pid_alive(other) \
                and time.time() - float(st.get("heartbeat") or 0) < STALE_S:
            raise RunError(f"{self.dir} is being trained by process {other}; stop it first")
        now = time.time()
        st.update(state="running", pid=os.getpid(), heartbeat=now, ended=None, error_tail=None,
                  epochs=config.epochs, source=config.data.source, model=config.model.name, resume=False)
        st.setdefault("created", now)
        st["started"] = st.get("started") or now
        self._status = st
        _unlink(self.stop_path)  # a STOP left by an earlier process must not end this one; one sent from now on counts
        self.elapsed_base = float(st.get("elapsed_s") or 0.0) if resume else 0.0
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._write()
        self._thread = threading.Thread(target=self._beat, name="charlab-heartbeat", daemon=True)
        self._thread.start()

    # status --------------------------------------------------------------------------
    def _write(self) -> None:
        with self._lock:
            self._status["heartbeat"] = time.time()
            if self._status.get("state") == "running":
                self._status["elapsed_s"] = round(self.elapsed_base + time.monotonic() - self._t0, 3)
            atomic_write_json(self.dir / STATUS, self._status)

    def _beat(self) -> None:
        while not self._closed.wait(HEARTBEAT_S):
            try:
                self._write()
            except Exception:  # a full disk must not kill training from a side thread
                pass

    def update(self, **changes) -> None:
        with self._lock:
            self._status.update(changes)
        self._write()

    def note_progress(self, **changes) -> None:
        """Record within-epoch progress for the next heartbeat, without writing now (called every batch)."""
        with self._lock:
            self._status.update(changes)

    def set_elapsed_base(self, seconds: float) -> None:
        self.elapsed_base, self._t0 = seconds, time.monotonic()

    # metrics -------------------------------------------------------------------------
    def prepare_resume(self, last_epoch: int) -> int:
        return truncate_metrics(self.dir, last_epoch)

    def append(self, row: dict) -> None:
        append_jsonl(self.metrics_path, row)

    # end -----------------------------------------------------------------------------
    def finish(self, state: str, **changes) -> None:
        self.update(state=state, ended=time.time(), **changes)
        self.close()

    def fail(self, exc: BaseException) -> None:
        if isinstance(exc, KeyboardInterrupt):
            self.finish("interrupted")
        elif isinstance(exc, CharlabError):
            self.finish("failed", error_tail=f"{type(exc).__name__}: {exc}")
        else:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            self.finish("failed", error_tail="\n".join(tb.strip().splitlines()[-25:]))

    def close(self) -> None:
        self._closed.set()


# -- launching and the queue ---------------------------------------------------------

@contextmanager
def _queue_lock(root: str | os.PathLike) -> Iterator[None]:
    """An exclusive lock over the root's queue (POSIX flock; a no-op where there is none)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: one launcher at a time is the user's job
        yield
        return
    with open(root / _LOCK, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _spawn(run_dir: Path, *, resume: bool, cwd: Optional[str] = None) -> int:
    """Start `python -m charlab train` on the run as its own session: it survives the
    launcher (a page reload, the app restarting, a shell closing)."""
    run_dir = run_dir.resolve()  # the child's cwd may differ from ours
    cmd = [sys.executable, "-m", "charlab", "train", "--config", str(run_dir / CONFIG), "--run-dir", str(run_dir)]
    if resume:
        cmd.append("--resume")
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR",
                                                           "MASTER_PORT", "LOCAL_WORLD_SIZE")}
    pkg_root = str(Path(__file__).resolve().parents[1])  # so `-m charlab` imports this charlab from any cwd
    env["PYTHONPATH"] = os.pathsep.join([pkg_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("PYTHONUNBUFFERED", "1")
    with open(run_dir / LOG, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cwd if cwd and Path(cwd).is_dir() else None, env=env,
                                start_new_session=True, close_fds=True)
    return proc.pid


def kick_queue(root: str | os.PathLike = "runs", max_parallel: Optional[int] = None) -> list[Path]:
    """Start the oldest queued runs while fewer than `max_parallel` run (default: what the
    oldest queued run was launched with). Every trainer calls this as it ends."""
    if not Path(root).is_dir():
        return []
    started: list[Path] = []
    with _queue_lock(root):
        infos = [_info(d) for d in _run_dirs(root)]
        queued = sorted((i for i in infos if i.state == "queued"), key=_queue_key)
        if not queued:
            return []
        limit = max_parallel or int(queued[0].status.get("max_parallel") or 1)
        running = sum(i.state == "running" for i in infos)
        for info in queued[:max(0, limit - running)]:
            pid = _spawn(info.run_dir, resume=bool(info.status.get("resume")), cwd=info.status.get("cwd"))
            update_status(info.run_dir, state="running", pid=pid, heartbeat=time.time())
            started.append(info.run_dir)
    return started


def launch(config: TrainConfig, root: str | os.PathLike = "runs", *, max_parallel: int = 1,
           run_dir: str | os.PathLike | None = None, sweep: Optional[str] = None) -> RunInfo:
    """Train `config` in a background process. With `max_parallel` runs already running it
    waits as `queued` and starts by itself when a slot frees."""
    d = create_run(config, root if run_dir is None else Path(run_dir).parent, run_dir=run_dir,
                   state="queued", sweep=sweep, max_parallel=max_parallel)
    kick_queue(d.parent, max_parallel)
    return run_info(d)


# -- stop, resume, delete ------------------------------------------------------------

def stop_run(run: RunRef, root: str | os.PathLike = "runs", *, wait: float = 0.0) -> RunInfo:
    """Ask a running run to finish its batch, write last.pt and end `stopped` (a STOP file);
    a queued run is taken off the queue at once. `wait` seconds: block until it has stopped."""
    d = resolve_run(run, root)
    info = run_info(d)
    if info.state == "queued":
        with _queue_lock(d.parent):
            if run_info(d).state == "queued":
                update_status(d, state="stopped", ended=time.time())
                return run_info(d)
    if info.state != "running":
        raise RunError(f"run {d.name} is {info.state}, not running; nothing to stop")
    atomic_write_bytes(d / STOP, b"stop requested\n")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and run_info(d).state == "running":
        time.sleep(0.2)
    return run_info(d)


def resume_run(run: RunRef, root: str | os.PathLike = "runs", *, max_parallel: Optional[int] = None) -> RunInfo:
    """Relaunch a stopped, interrupted or failed run from its last.pt, continuing the same
    metrics log (the trainer drops rows newer than the checkpoint, so none is duplicated)."""
    d = resolve_run(run, root)
    info = run_info(d)
    if info.state not in ("stopped", "interrupted", "failed"):
        what = {"running": "is still running", "queued": "is already queued", "done": "has finished"}.get(
            info.state, f"is {info.state}")
        raise RunError(f"run {d.name} {what}; only stopped, interrupted or failed runs resume")
    with _queue_lock(d.parent):
        _unlink(d / STOP)
        limit = max_parallel or int(info.status.get("max_parallel") or 1)
        update_status(d, state="queued", queued_at=time.time(), resume=True, pid=None, error_tail=None,
                      max_parallel=limit)
    kick_queue(d.parent, max_parallel)
    return run_info(d)


def delete_run(run: RunRef, root: str | os.PathLike = "runs") -> Path:
    """Remove a run directory. A running run must be stopped first."""
    d = resolve_run(run, root)
    if not ((d / STATUS).exists() or (d / CONFIG).exists()):
        raise RunError(f"{d} does not look like a run directory; not deleting it")
    with _queue_lock(d.parent):
        info = run_info(d)
        if info.state == "running":
            raise RunError(f"run {d.name} is running (pid {info.pid}); stop it first "
                           f"(python -m charlab runs stop {d.name}) and delete it once it shows stopped")
        shutil.rmtree(d)
    return d
