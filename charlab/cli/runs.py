"""`python -m charlab runs list|show|stop|resume|delete`: manage run directories.

RUN is a run directory, or a run id (or a unique part of one) under --root (default
$CHARLAB_RUNS, else runs/; any folder, shared by several machines if you like).
`list` shows the TRUE state: a run whose process died shows interrupted or failed, one
alive but making no progress shows stalled, one on another host is judged by its
heartbeat. Listing only reads: it never starts a queued run.
"""
from __future__ import annotations

import argparse
import json
import time

from .. import runs  # no torch here: `runs list` and `runs show` read JSON files


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list, stop, resume and delete training runs", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    rsub = p.add_subparsers(dest="runs_command", metavar="ACTION", required=True)

    def action(name: str, help: str, func, run: bool = True) -> argparse.ArgumentParser:
        a = rsub.add_parser(name, help=help)
        if run:
            a.add_argument("run", metavar="RUN", help="run directory or run id")
        a.add_argument("--root", default=None, help="folder of the runs (default $CHARLAB_RUNS, else runs/)")
        a.add_argument("--json", action="store_true", help="print JSON")
        a.set_defaults(func=func)
        return a

    action("list", "list runs, newest first, with their true state", _list, run=False)
    action("show", "one run's status and metrics", _show)
    stop = action("stop", "ask a run to finish its batch, save last.pt and stop", _stop)
    stop.add_argument("--wait", type=float, default=0.0, metavar="S", help="wait up to S seconds for it to stop")
    resume = action("resume", "continue a stopped, interrupted or failed run from its last.pt", _resume)
    resume.add_argument("--max-parallel", type=int, default=None, help="runs training at once (default: as launched)")
    action("delete", "delete a run directory (stop a running run first)", _delete)
    action("kick", "start the oldest queued runs while slots are free (when the trainer ahead of them died)",
           _kick, run=False)


def _fmt(v, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


def _ago(t) -> str:
    if not t:
        return "never"
    s = max(0.0, time.time() - float(t))
    return f"{s:.0f}s ago" if s < 90 else f"{s / 60:.0f}m ago" if s < 5400 else f"{s / 3600:.1f}h ago"


def _state(i: runs.RunInfo) -> str:
    state = f"{i.state}#{i.queue_position}" if i.queue_position else i.state
    return f"{state}@{i.host}" if i.foreign else state


def _notes(i: runs.RunInfo) -> list[str]:
    """What a user should know beyond the state: a stall, another host, a damaged file."""
    out = []
    if i.state == runs.STALLED:
        out.append(f"stalled: its process is alive but finished no batch since {_ago(i.last_progress)}")
    if i.foreign:
        out.append(f"trains on {i.host}; judged by its heartbeat ({_ago(i.status.get('heartbeat'))})")
    if i.unreadable:
        out.append(i.error_tail or "")
    return out


def _list(args: argparse.Namespace) -> int:
    root = args.root if args.root is not None else runs.default_root()
    infos = runs.list_runs(root)
    if args.json:
        print(json.dumps([{k: v for k, v in i.to_dict().items() if k != "status"} for i in infos], indent=2))
        return 0
    if not infos:
        print(f"no runs under {root}")
        return 0
    w = max(11, *(len(_state(i)) for i in infos))
    print(f"{'id':<40} {'state':<{w}} {'epoch':>7} {'val_acc':>8} {'val_f1':>8} {'time':>7}  source")
    for i in infos:
        dur = "-" if not i.duration_s else f"{i.duration_s:.0f}s" if i.duration_s < 90 else f"{i.duration_s / 60:.1f}m"
        print(f"{i.id:<40} {_state(i):<{w}} {f'{i.epoch}/{i.epochs}':>7} {_fmt(i.best_val_acc):>8} "
              f"{_fmt(i.best_val_macro_f1):>8} {dur:>7}  {i.source}")
        for note in _notes(i):
            print(f"{'':<40} {note}")
    if any(i.queue_position for i in infos) and not any(i.is_training for i in infos):
        print(f"queued runs wait, but nothing trains: the trainer ahead of them died. Start them: "
              f"python -m charlab runs kick{'' if args.root is None else ' --root ' + str(root)}")
    return 0


def _kick(args: argparse.Namespace) -> int:
    started = runs.kick_queue(args.root)
    print(json.dumps({"started": [str(d) for d in started]}) if args.json else
          "\n".join(f"started {d.name}" for d in started) or "nothing to start (no queued run, or no free slot)")
    return 0


def _show(args: argparse.Namespace) -> int:
    d = runs.resolve_run(args.run, args.root)
    info = runs.run_info(d)
    rows, bad = runs.read_metrics_checked(d)
    if args.json:
        print(json.dumps({**info.to_dict(), "metrics": rows, "corrupt_metrics_lines": bad}, indent=2, default=str))
        return 0
    print(f"{info.id}: {_state(info)}, epoch {info.epoch}/{info.epochs}, model {info.model}, source {info.source}")
    for note in _notes(info):
        print(f"  {note}")
    for r in rows:
        print("  " + " ".join(f"{k}={_fmt(v, '.4g') if isinstance(v, float) else v}" for k, v in r.items()))
    if bad:
        print(f"  note: {runs.METRICS} line(s) {', '.join(map(str, bad))} are corrupt and were skipped")
    if info.error_tail and not info.unreadable:
        print(info.error_tail)
    return 0


def _stop(args: argparse.Namespace) -> int:
    info = runs.stop_run(args.run, args.root, wait=args.wait)
    print(json.dumps({"run_dir": str(info.run_dir), "state": info.state}) if args.json else
          f"{info.id}: {'stop requested' if info.is_active else info.state}")
    return 0


def _resume(args: argparse.Namespace) -> int:
    info = runs.resume_run(args.run, args.root, max_parallel=args.max_parallel)
    print(json.dumps({"run_dir": str(info.run_dir), "state": info.state, "queue_position": info.queue_position})
          if args.json else f"{info.id}: {info.state} (resuming after epoch {info.epoch})")
    return 0


def _delete(args: argparse.Namespace) -> int:
    d = runs.delete_run(args.run, args.root)
    print(json.dumps({"deleted": str(d)}) if args.json else f"deleted {d}")
    return 0
