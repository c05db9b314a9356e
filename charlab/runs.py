"""Run directories: create, launch in the background, queue, list, stop, resume, delete.

One directory per run (see DESIGN.md); `RunDir` is the one place that names its files:

    runs/<YYYYmmdd-HHMMSS>-<model>-<shortid>/
      config.json    the full TrainConfig, written once
      status.json    {state, pid, host, epoch, best, heartbeat, progress_at, ...}, replaced atomically
      metrics.jsonl  one JSON object per epoch, append-only (+ a final {"split": "test"} row)
      best.pt last.pt train.log STOP

The training process is the only writer of a running run's files; everybody else (the
app, `runs list`) reads them and derives the TRUE state (`RunInfo.state`):
- a run whose process is gone is `interrupted`, or `failed` with the reason from train.log;
- a run whose process is alive but finished no batch for CHARLAB_STALL_S seconds (a
  deadlock, a stuck filesystem, SIGSTOP) is `stalled`: the heartbeat thread keeps beating
  in a hung trainer, so progress is recorded apart from it (`progress_at`);
- a run from another host (a shared CHARLAB_RUNS folder) is judged by its heartbeat, since
  a pid means nothing here.
Reading never starts a process. The queue advances when a run is launched or resumed and
when a trainer ends (it kicks the queue on its way out). Launching, stopping, resuming
and deleting take a lock file in the root, so two launchers never start a run twice.
"""
from __future__ import annotations

import difflib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, Union

from .errors import CharlabError, RunError
from .io import append_jsonl, atomic_write_bytes, atomic_write_json, read_jsonl, repair_jsonl

if TYPE_CHECKING:  # config is imported where a config is read or written, so listing stays light
    from .config import TrainConfig

# what status.json may say; `stalled` is never written, only derived by readers
STATES = ("queued", "running", "done", "failed", "stopped", "interrupted")
QUEUED, RUNNING, DONE, FAILED, STOPPED, INTERRUPTED = STATES  # by name, for the writers of status.json
STALLED = "stalled"
TRAINING = ("running", STALLED)  # a live process owns the run
ACTIVE = ("queued",) + TRAINING  # ... or the queue will start one
RESUMABLE = ("stopped", "interrupted", "failed")
# one text symbol per state, for listings that draw the state (the Runs page, menus)
STATE_ICON = {"running": "●", "queued": "…", "done": "✓", "stopped": "■", "failed": "✗", "interrupted": "!",
              STALLED: "◐"}
FINISHED = ("done", "stopped")  # ended on purpose: best.pt is a result to use
HEARTBEAT_S = 5.0  # the trainer rewrites status.json this often
STALE_S = 120.0  # a heartbeat older than this: the process is dead, frozen or on a host that lost the folder
STALL_S = 300.0  # default of CHARLAB_STALL_S: no finished batch for this long while alive = stalled
HOST = socket.gethostname()
CONFIG, STATUS, METRICS, BEST, LAST, LOG, STOP = (
    "config.json", "status.json", "metrics.jsonl", "best.pt", "last.pt", "train.log", "STOP")
_LOCK = ".queue.lock"

RunRef = Union[str, os.PathLike, "RunInfo", "RunDir"]


def stall_s() -> float:
    """CHARLAB_STALL_S, but at least two heartbeats: progress reaches status.json with the
    heartbeat, so a shorter limit would call a healthy trainer stalled between two beats."""
    try:
        limit = float(os.environ.get("CHARLAB_STALL_S") or STALL_S)
    except ValueError:
        limit = STALL_S
    return max(limit, 2 * HEARTBEAT_S)


def default_root() -> Path:
    """CHARLAB_RUNS (any folder, shared by several hosts if you like), else ./runs."""
    return Path(os.environ.get("CHARLAB_RUNS") or "runs")


class RunDir:
    """A run directory's files. Every other module asks this for a path or a state file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    config = property(lambda self: self.path / CONFIG)
    status = property(lambda self: self.path / STATUS)
    metrics = property(lambda self: self.path / METRICS)
    best = property(lambda self: self.path / BEST)
    last = property(lambda self: self.path / LAST)
    log = property(lambda self: self.path / LOG)
    stop = property(lambda self: self.path / STOP)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def is_run(self) -> bool:
        return self.status.is_file() or self.config.is_file()

    def checkpoint(self) -> Optional[Path]:
        """best.pt, else last.pt, else None (no epoch finished yet)."""
        return next((p for p in (self.best, self.last) if p.is_file()), None)

    def write_config(self, config: "TrainConfig") -> None:
        """config.json is written once, here, when the run is made."""
        from .config import to_dict

        atomic_write_json(self.config, to_dict(config))

    def request_stop(self, why: str = "stop requested") -> None:
        """The STOP file: the trainer finishes its batch, writes last.pt and ends `stopped`."""
        atomic_write_bytes(self.stop, (json.dumps({"at": time.time(), "why": why}) + "\n").encode())

    def stop_requested(self) -> bool:
        return self.stop.exists()

    def clear_stop(self) -> None:
        _unlink(self.stop)

    def clear_temp(self) -> int:
        """Remove temp files of atomic writes that a killed process left behind."""
        n = 0
        for p in self.path.glob(".*.tmp"):
            _unlink(p)
            n += 1
        return n

    def check_new(self) -> None:
        """Refuse a --run-dir that is a file, or a folder of someone else's files."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise RunError(f"{p} is a file, not a run directory; pick a new folder for --run-dir")
        if p.parent.exists() and not p.parent.is_dir():
            raise RunError(f"{p.parent} is a file, not a folder for runs")
        if self.config.exists():
            raise RunError(f"{p} already holds a run; resume it (python -m charlab runs resume {p}) "
                           "or pick another --run-dir")
        if p.is_dir() and any(p.iterdir()):
            raise RunError(f"{p} is a folder of other files, not a run; charlab writes a run only into a new "
                           "or empty folder (pick another --run-dir)")


def _dir_of(ref: RunRef) -> Path:
    if isinstance(ref, RunInfo):
        return ref.run_dir
    return ref.path if isinstance(ref, RunDir) else Path(ref)


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
    host: Optional[str] = None  # where the trainer runs (None: a run of the earlier release, this host)
    alive: bool = False  # its trainer process still exists (another host's: its heartbeat is fresh)
    last_progress: Optional[float] = None  # unix time of the last finished batch (or epoch, or start)
    unreadable: bool = False  # status.json could not be read: shown failed, with the reason
    status: dict = field(default_factory=dict, repr=False)  # status.json as written

    @property
    def foreign(self) -> bool:
        return self.host not in (None, HOST)

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE

    @property
    def is_training(self) -> bool:
        return self.state in TRAINING

    @property
    def can_stop(self) -> bool:
        return self.is_active

    @property
    def can_resume(self) -> bool:
        return self.state in RESUMABLE and not self.alive and not self.unreadable

    @property
    def can_delete(self) -> bool:
        # a queued run has no process yet; deleting it under the queue lock races with no start
        return not self.is_training and not self.alive

    @property
    def best_checkpoint(self) -> Optional[Path]:
        """best.pt of a run that ended on purpose (done or stopped), else None."""
        p = RunDir(self.run_dir).best
        return p if self.state in FINISHED and p.is_file() else None

    def why_not(self, action: str) -> str:
        """One line: why `action` (stop, resume, delete) is refused now."""
        where = f" on {self.host}" if self.foreign else ""
        if action == "stop":
            return f"run {self.id} is {self.state}, not running; nothing to stop"
        if self.alive:
            return (f"run {self.id} is {self.state} and its process{where} (pid {self.pid}) is still alive; "
                    f"stop it first (python -m charlab runs stop {self.id})")
        if action == "resume":
            if self.unreadable:
                return f"run {self.id} cannot resume: {self.error_tail}"
            what = {"running": "is still running", "queued": "is already queued", "done": "has finished",
                    STALLED: "is stalled (alive, making no progress); stop it first"}.get(self.state, f"is {self.state}")
            return f"run {self.id} {what}; only stopped, interrupted or failed runs resume"
        return (f"run {self.id} is {self.state}; stop it first (python -m charlab runs stop {self.id}) "
                "and delete it once it shows stopped")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["run_dir"] = str(self.run_dir)
        d.update(foreign=self.foreign, can_stop=self.can_stop, can_resume=self.can_resume,
                 can_delete=self.can_delete)
        return d


# -- reading ---------------------------------------------------------------------------

def _read_status(run_dir: str | os.PathLike) -> tuple[dict, Optional[str]]:
    """(status, None), or ({}, why) when status.json is missing, unreadable or not an object.
    It is replaced atomically, so unreadable means damaged, never half-written."""
    p = RunDir(run_dir).status
    try:
        st = json.loads(p.read_bytes())
    except FileNotFoundError:
        return {}, f"{STATUS} is missing"
    except (OSError, ValueError) as e:
        return {}, f"{STATUS} is unreadable ({type(e).__name__}: {str(e)[:120]})"
    return (st, None) if isinstance(st, dict) else ({}, f"{STATUS} holds a {type(st).__name__}, not an object")


def read_status(run_dir: str | os.PathLike) -> dict:
    """status.json as a dict; {} when absent or unreadable."""
    return _read_status(run_dir)[0]


def read_metrics(run_dir: RunRef) -> list[dict]:
    """The metrics rows, oldest first; a torn last line (a writer killed mid-write) and
    corrupt lines are skipped (`metrics_problems` says which)."""
    return read_jsonl(RunDir(_dir_of(run_dir)).metrics)


def read_metrics_checked(run_dir: RunRef) -> tuple[list[dict], list[int]]:
    """(rows, numbers of corrupt lines other than a torn last one): what the Runs page reports."""
    bad: list[int] = []
    rows = read_jsonl(RunDir(_dir_of(run_dir)).metrics, bad_lines=bad)
    return rows, bad


def read_config(run_dir: RunRef) -> "TrainConfig":
    from .config import TrainConfig, from_dict

    p = RunDir(_dir_of(run_dir)).config
    try:
        d = json.loads(p.read_bytes())
    except FileNotFoundError:
        raise RunError(f"{p.parent} is not a run directory (no {CONFIG})") from None
    except (OSError, ValueError) as e:
        raise RunError(f"{p} is not valid JSON: {e}") from None
    if not isinstance(d, dict):
        raise RunError(f"{p} holds a JSON {type(d).__name__}, not a config object")
    try:
        cfg = from_dict(TrainConfig, d)
        cfg.validate()
    except CharlabError as e:
        raise RunError(f"{p} is not a valid config: {e}") from None
    except (TypeError, ValueError, AttributeError) as e:
        raise RunError(f"{p} is not a valid config ({type(e).__name__}: {e})") from None
    return cfg


def _proc_start(pid: Optional[int]) -> Optional[str]:
    """The process's start time in clock ticks since boot (Linux), to tell it from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()[19]
    except (OSError, ValueError, IndexError):
        return None


def _pid_alive(pid: Optional[int], start: Optional[str] = None) -> bool:
    """Whether process `pid` (started at `start`, when known) is alive on this host."""
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
        pass
    try:  # a zombie (dead, not yet reaped by a parent that is not us) is not running
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rindex(")") + 2] == "Z":
            return False
    except (OSError, ValueError, IndexError):
        return True
    return start is None or _proc_start(pid) == start


def log_tail(run_dir: str | os.PathLike, lines: int = 25) -> str:
    p = RunDir(run_dir).log
    try:
        with open(p, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except (FileNotFoundError, IsADirectoryError):
        return ""
    text = text.replace("\r", "\n")  # tqdm redraws with carriage returns
    return "\n".join([ln for ln in text.splitlines() if ln.strip()][-lines:])


def _failure_reason(tail: str) -> Optional[str]:
    """A traceback, or the CLI's one-line `error: …`, at the end of train.log."""
    i = tail.rfind("Traceback (most recent call last)")
    if i >= 0:
        return tail[i:]
    last = tail.splitlines()[-1] if tail else ""
    return last if last.startswith("error: ") else None


def _judge(st: dict, run_dir: Path, now: float) -> tuple[str, Optional[str], bool, Optional[float]]:
    """(true state, error_tail, alive, last progress time) from status.json and the facts."""
    state = st.get("state") or "queued"
    heartbeat = float(st.get("heartbeat") or 0)
    fresh = now - heartbeat < STALE_S
    foreign = st.get("host") not in (None, HOST)
    start = st.get("pid_start")
    if state != "running":
        # a trainer that wrote its final state writes the run no more, even if its process lives
        # on (a sweep's next trial, a notebook that called fit)
        return state, st.get("error_tail"), False, st.get("progress_at")
    if foreign:
        alive = fresh  # its pid names a process on another machine
    elif start is None:  # written by the queue before the child started, or by the earlier release:
        alive = _pid_alive(st.get("pid"))  # a live pid may be a reused one, but a second writer is worse
    else:
        alive = _pid_alive(st.get("pid"), start)
    progress = float(st.get("progress_at") or st.get("started") or heartbeat or 0) or None
    if alive:
        stalled = not fresh or (progress is not None and now - progress > stall_s())
        return (STALLED if stalled else "running"), None, True, progress
    reason = _failure_reason(log_tail(run_dir, 40))
    return ("failed", reason, False, progress) if reason else ("interrupted", None, False, progress)


def true_state(status: dict, run_dir: Path, now: Optional[float] = None) -> tuple[str, Optional[str]]:
    """(state, error_tail): what is really going on, whatever status.json last said."""
    state, err, _, _ = _judge(status, Path(run_dir), time.time() if now is None else now)
    return state, err


def _info(d: Path, now: Optional[float] = None) -> RunInfo:
    st, problem = _read_status(d)
    if problem is not None:  # never `queued`: a damaged status must not start a trainer
        return RunInfo(run_dir=d, id=d.name, state="failed", epoch=0, epochs=0, best_val_acc=None,
                       best_val_macro_f1=None, duration_s=None, source="", model="",
                       created=_mtime(d), error_tail=problem, unreadable=True, status={})
    state, err, alive, progress = _judge(st, d, time.time() if now is None else now)
    best = st.get("best_metrics") or {}
    return RunInfo(run_dir=d, id=d.name, state=state, epoch=int(st.get("epoch") or 0),
                   epochs=int(st.get("epochs") or 0), best_val_acc=best.get("val_acc"),
                   best_val_macro_f1=best.get("val_macro_f1"), duration_s=st.get("elapsed_s"),
                   source=st.get("source", ""), model=st.get("model", ""), created=float(st.get("created") or 0),
                   pid=st.get("pid"), best_epoch=int(st.get("best_epoch") or 0), error_tail=err,
                   test_metrics=st.get("test_metrics"), sweep=st.get("sweep"), host=st.get("host"),
                   alive=alive, last_progress=progress, status=st)


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


def _check_root(root: str | os.PathLike) -> Path:
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise RunError(f"{root} is a file, not a folder of runs (--root / CHARLAB_RUNS)")
    return root


def _run_dirs(root: str | os.PathLike) -> list[Path]:
    root = _check_root(root)
    if not root.is_dir():
        return []
    return [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / STATUS).exists()]


def run_info(run_dir: RunRef) -> RunInfo:
    """The run's RunInfo with its true state (and its place in the queue when queued)."""
    info = _info(_dir_of(run_dir))
    if info.state == "queued":
        queued = sorted((i for i in map(_info, _run_dirs(info.run_dir.parent)) if i.state == "queued"),
                        key=_queue_key)
        info.queue_position = next((n for n, i in enumerate(queued, 1) if i.run_dir == info.run_dir), None)
    return info


def list_runs(root: str | os.PathLike | None = None) -> list[RunInfo]:
    """Every run under `root` (default: CHARLAB_RUNS or ./runs), newest first, with its
    true state. Only reads: it never starts a queued run."""
    now = time.time()
    infos = [_info(d, now) for d in _run_dirs(root if root is not None else default_root())]
    queued = sorted((i for i in infos if i.state == "queued"), key=_queue_key)
    for pos, info in enumerate(queued, 1):
        info.queue_position = pos
    return sorted(infos, key=lambda i: (i.created, i.id), reverse=True)


def _queue_key(info: RunInfo) -> tuple:
    return (float(info.status.get("queued_at") or info.created), info.id)


# -- resolving a reference -----------------------------------------------------------

def resolve_run(ref: RunRef, root: str | os.PathLike | None = None) -> Path:
    """A run directory, or a run id (or a unique part of one, 3 characters at least) under `root`."""
    if isinstance(ref, (RunInfo, RunDir)):
        return _dir_of(ref)
    text = os.fspath(ref)
    if not text.strip():
        raise RunError("an empty run name matches nothing; give a run id or a run directory "
                       "(python -m charlab runs list)")
    p = Path(text)
    if p.is_dir() and RunDir(p).is_run():
        return p.resolve()
    if p.is_file():
        raise RunError(f"{p} is a file, not a run directory")
    root = _check_root(root if root is not None else default_root())
    ids = sorted(d.name for d in _run_dirs(root))
    if text in ids:
        return (root / text).resolve()
    hits = [i for i in ids if text in i] if len(text.strip()) >= 3 else []
    if len(hits) == 1:
        return (root / hits[0]).resolve()
    if len(hits) > 1:
        raise RunError(f"{text!r} matches several runs under {root}: {', '.join(hits[:10])}")
    close = difflib.get_close_matches(text, ids, n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else (
        f"; runs there: {', '.join(ids[-5:])}" if ids else f"; {root} holds no runs")
    raise RunError(f"no run {text!r} (neither a run directory nor a run id under {root}){hint}")


# -- creating and writing ------------------------------------------------------------

def new_run_id(model: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", model) or "model"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}-{secrets.token_hex(3)}"


def _base_status(config: "TrainConfig") -> dict:
    return {"state": "queued", "pid": None, "pid_start": None, "host": HOST, "epoch": 0, "epochs": config.epochs,
            "best": None, "best_epoch": 0, "best_metrics": None, "monitor": config.monitor, "heartbeat": None,
            "progress_at": None, "created": time.time(), "queued_at": None, "started": None, "ended": None,
            "elapsed_s": None, "error_tail": None, "source": config.data.source, "model": config.model.name,
            "cwd": os.getcwd()}  # relative paths in the config (source, init_from) mean what they meant here


def create_run(config: "TrainConfig", root: str | os.PathLike | None = None, *,
               run_dir: str | os.PathLike | None = None, state: str = "queued", sweep: Optional[str] = None,
               max_parallel: int = 1) -> Path:
    """Make a run directory with config.json (written once) and status.json. A `queued`
    run is started by the queue (`launch`/`kick_queue`); the foreground trainer creates
    its own directory as `running`. A `run_dir` must be new or an empty folder."""
    config.validate()
    root = _check_root(root if root is not None else default_root())
    rd = RunDir(run_dir if run_dir is not None else root / new_run_id(config.model.name))
    rd.check_new()
    try:
        rd.path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:
        raise RunError(f"cannot make the run directory {rd.path}: {e.strerror} ({e.filename})") from None
    rd.write_config(config)
    st = _base_status(config)
    st.update(state=state, queued_at=time.time() if state == "queued" else None, max_parallel=max_parallel)
    if state == "running":
        now = time.time()
        st.update(pid=os.getpid(), pid_start=_proc_start(os.getpid()), heartbeat=now, progress_at=now, started=now)
    if sweep is not None:
        st["sweep"] = sweep
    atomic_write_json(rd.status, st)
    return rd.path.resolve()


def update_status(run_dir: str | os.PathLike, **changes) -> dict:
    """Read-modify-write status.json (for the launcher side; the trainer uses RunRecorder)."""
    st = read_status(run_dir)
    st.update(changes)
    atomic_write_json(RunDir(run_dir).status, st)
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
    p = RunDir(run_dir).metrics
    if not p.exists():
        return 0
    repair_jsonl(p)
    rows = read_jsonl(p)
    keep = [r for r in rows if r.get("split", "train") == "train" and int(r.get("epoch", 0)) <= last_epoch]
    if len(keep) != len(rows):
        atomic_write_bytes(p, "".join(json.dumps(r) + "\n" for r in keep).encode())
    return len(rows) - len(keep)


def check_resumable(run_dir: RunRef) -> "TrainConfig":
    """The run's config, after checking that a resume can start: config.json reads, and
    last.pt (if any) loads and holds the architecture config.json asks for. Imports torch
    (to read last.pt). Raises RunError with one line that says what is wrong."""
    d = RunDir(_dir_of(run_dir))
    cfg = read_config(d.path)
    if not d.last.exists():
        return cfg
    from .checkpoint import read_checkpoint_dict

    try:
        state = read_checkpoint_dict(d.last)
    except CharlabError as e:
        raise RunError(f"cannot resume {d.path.name}: {e}") from None
    theirs = (state.get("config") or {}).get("model") or {}
    if not isinstance(theirs, dict) or theirs.get("name") != cfg.model.name:
        name = theirs.get("name") if isinstance(theirs, dict) else None
        raise RunError(f"cannot resume {d.path.name}: its {CONFIG} asks for a {cfg.model.name} but {LAST} holds "
                       f"a {name} (was {CONFIG} edited?); put the architecture back or start a new run")
    shape = tuple(state.get("input_shape") or ())
    if shape and shape != (cfg.data.image_size, cfg.data.image_size):
        raise RunError(f"cannot resume {d.path.name}: its {CONFIG} asks for {cfg.data.image_size}-pixel images but "
                       f"{LAST} was trained on {shape[0]}×{shape[1]} (was {CONFIG} edited?)")
    from .checkpoint import build_model_from_config

    try:  # edited builder options (width, depth…) change the weights' shapes: load them to know
        build_model_from_config(cfg, len(state["classes"]), shape or (cfg.data.image_size,) * 2).load_state_dict(
            state["model"])
    except CharlabError as e:
        raise RunError(f"cannot resume {d.path.name}: {e}") from None
    except (RuntimeError, TypeError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise RunError(f"cannot resume {d.path.name}: {LAST} does not fit the model its {CONFIG} describes "
                       f"({cfg.model.name} {json.dumps(cfg.model.kwargs)}; {first}); was {CONFIG} edited?") from None
    return cfg


def fail_unstarted(run_dir: RunRef, exc: BaseException) -> None:
    """A trainer that the queue started for a run but that cannot begin (a damaged config,
    a last.pt that does not load) ends the run `failed` with the reason, rather than leave
    it to show `interrupted` with no word, and frees its slot in the queue."""
    d = _dir_of(run_dir)
    st, problem = _read_status(d)
    if problem is None and st.get("state") == "running" and st.get("pid") == os.getpid():
        update_status(d, state="failed", ended=time.time(), error_tail=f"{type(exc).__name__}: {exc}")
        try:  # the slot is free; a problem here must not hide the reason above
            kick_queue(d.parent)
        except (CharlabError, OSError):
            pass


class RunRecorder:
    """The training process's handle on its run directory: status with a heartbeat
    thread, the metrics log, the checkpoint paths, the STOP file. Only rank 0 has one."""

    def __init__(self, run_dir: str | os.PathLike, config: "TrainConfig", *, resume: bool = False):
        self.run = RunDir(Path(run_dir).resolve())
        self.dir = self.run.path
        self.metrics_path, self.best_path, self.last_path = self.run.metrics, self.run.best, self.run.last
        self.stop_path = self.run.stop
        if not self.run.config.exists():
            self.run.check_new()
            self.dir.mkdir(parents=True, exist_ok=True)
            self.run.write_config(config)
        elif not resume and (read_jsonl(self.metrics_path) or self.last_path.exists()):
            raise RunError(f"{self.dir} already holds a trained run; resume it "
                           f"(python -m charlab runs resume {self.dir}) or pick another --run-dir")
        st = read_status(self.dir) or _base_status(config)
        me = os.getpid()
        other = st.get("pid")
        if st.get("state") == "running" and other not in (None, me):
            info = _info(self.dir)
            if info.alive:
                raise RunError(f"{self.dir} is being trained by process {other}"
                               f"{' on ' + info.host if info.foreign else ''}; stop it first")
        if other != me:
            # this process claims the run itself (a foreground `train --resume`): a STOP left by
            # an earlier process must not end it. When the queue claimed it for us (pid == ours),
            # a STOP may have been sent since, and it counts.
            self.run.clear_stop()
        self.run.clear_temp()
        now = time.time()
        st.update(state="running", pid=me, pid_start=_proc_start(me), host=HOST, heartbeat=now, progress_at=now,
                  ended=None, error_tail=None, epochs=config.epochs, source=config.data.source,
                  model=config.model.name, resume=False)
        st.setdefault("created", now)
        st["started"] = st.get("started") or now
        self._status = st
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
            atomic_write_json(self.run.status, self._status)

    def _beat(self) -> None:
        while not self._closed.wait(HEARTBEAT_S):
            try:
                self._write()
            except Exception:  # a full disk must not kill training from a side thread
                pass

    def update(self, **changes) -> None:
        with self._lock:
            self._status.update(changes, progress_at=time.time())
        self._write()

    def note_progress(self, **changes) -> None:
        """A batch finished: record it for the next heartbeat, without writing now (every
        batch). The heartbeat alone never counts as progress, so a hung loop shows stalled."""
        with self._lock:
            self._status.update(changes, progress_at=time.time())

    def set_elapsed_base(self, seconds: float) -> None:
        self.elapsed_base, self._t0 = seconds, time.monotonic()

    # metrics -------------------------------------------------------------------------
    def prepare_resume(self, last_epoch: int) -> int:
        return truncate_metrics(self.dir, last_epoch)

    def append(self, row: dict) -> None:
        append_jsonl(self.metrics_path, row)

    # end -----------------------------------------------------------------------------
    def finish(self, state: str, **changes) -> None:
        try:
            self.update(state=state, ended=time.time(), **changes)
        finally:
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
    root = _check_root(root)
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
    rd = RunDir(run_dir.resolve())  # the child's cwd may differ from ours
    cmd = [sys.executable, "-m", "charlab", "train", "--config", str(rd.config), "--run-dir", str(rd.path)]
    if resume:
        cmd.append("--resume")
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR",
                                                           "MASTER_PORT", "LOCAL_WORLD_SIZE")}
    pkg_root = str(Path(__file__).resolve().parents[1])  # so `-m charlab` imports this charlab from any cwd
    env["PYTHONPATH"] = os.pathsep.join([pkg_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("PYTHONUNBUFFERED", "1")
    with open(rd.log, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cwd if cwd and Path(cwd).is_dir() else None, env=env,
                                start_new_session=True, close_fds=True)
    return proc.pid


def kick_queue(root: str | os.PathLike | None = None, max_parallel: Optional[int] = None) -> list[Path]:
    """Start the oldest queued runs while fewer than `max_parallel` run (default: what the
    oldest queued run was launched with). Called by launch, resume and every trainer as it
    ends; never by a reader."""
    root = _check_root(root if root is not None else default_root())
    if not root.is_dir():
        return []
    started: list[Path] = []
    with _queue_lock(root):
        infos = [_info(d) for d in _run_dirs(root)]
        queued = sorted((i for i in infos if i.state == "queued"), key=_queue_key)
        if not queued:
            return []
        limit = max_parallel or int(queued[0].status.get("max_parallel") or 1)
        running = sum(i.is_training for i in infos)
        for info in queued[:max(0, limit - running)]:
            pid = _spawn(info.run_dir, resume=bool(info.status.get("resume")), cwd=info.status.get("cwd"))
            now = time.time()
            update_status(info.run_dir, state="running", pid=pid, pid_start=None, host=HOST, heartbeat=now,
                          progress_at=now, claimed_at=now)
            started.append(info.run_dir)
    return started


def launch(config: "TrainConfig", root: str | os.PathLike | None = None, *, max_parallel: int = 1,
           run_dir: str | os.PathLike | None = None, sweep: Optional[str] = None) -> RunInfo:
    """Train `config` in a background process. With `max_parallel` runs already running it
    waits as `queued` and starts by itself when a slot frees."""
    root = root if root is not None else default_root()
    d = create_run(config, root if run_dir is None else Path(run_dir).parent, run_dir=run_dir,
                   state="queued", sweep=sweep, max_parallel=max_parallel)
    kick_queue(d.parent, max_parallel)
    return run_info(d)


# -- stop, resume, delete ------------------------------------------------------------

def stop_run(run: RunRef, root: str | os.PathLike | None = None, *, wait: float = 0.0) -> RunInfo:
    """Ask a running run to finish its batch, write last.pt and end `stopped` (a STOP file);
    a queued run is taken off the queue at once. `wait` seconds: block until it has stopped."""
    d = resolve_run(run, root)
    info = run_info(d)
    if info.state == "queued":
        with _queue_lock(d.parent):
            if run_info(d).state == "queued":
                update_status(d, state="stopped", ended=time.time())
                return run_info(d)
        info = run_info(d)
    if not info.can_stop:
        raise RunError(info.why_not("stop"))
    RunDir(d).request_stop("runs stop")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and run_info(d).is_active:
        time.sleep(0.2)
    return run_info(d)


def resume_run(run: RunRef, root: str | os.PathLike | None = None, *, max_parallel: Optional[int] = None) -> RunInfo:
    """Relaunch a stopped, interrupted or failed run from its last.pt, continuing the same
    metrics log (the trainer drops rows newer than the checkpoint, so none is duplicated).
    Refuses, with the reason, a run whose process is alive, whose config.json is damaged
    or edited to another architecture, or whose last.pt does not load."""
    d = resolve_run(run, root)
    if not run_info(d).can_resume:
        raise RunError(run_info(d).why_not("resume"))
    check_resumable(d)  # before it says queued or running: a resume that cannot start fails here
    with _queue_lock(d.parent):
        info = run_info(d)
        if not info.can_resume:
            raise RunError(info.why_not("resume"))
        RunDir(d).clear_stop()  # a STOP of the earlier life; one sent from now on counts
        limit = max_parallel or int(info.status.get("max_parallel") or 1)
        update_status(d, state="queued", queued_at=time.time(), resume=True, pid=None, pid_start=None,
                      error_tail=None, max_parallel=limit)
    kick_queue(d.parent, max_parallel)
    return run_info(d)


def delete_run(run: RunRef, root: str | os.PathLike | None = None) -> Path:
    """Remove a run directory. A running run (or one whose process is alive) must be stopped first."""
    d = resolve_run(run, root)
    if not RunDir(d).is_run():
        raise RunError(f"{d} does not look like a run directory; not deleting it")
    with _queue_lock(d.parent):
        info = run_info(d)
        if not info.can_delete:
            raise RunError(info.why_not("delete"))
        shutil.rmtree(d)
    return d
