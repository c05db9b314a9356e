"""`python -m charlab runs list|show|stop|resume|delete`: manage run directories.

RUN is a run directory, or a run id (or a unique part of one) under --root (default runs/).
`list` shows the TRUE state: a run whose process died shows interrupted or failed.
"""
from __future__ import annotations

import argparse
import json

from .. import runs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list, stop, resume and delete training runs", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    rsub = p.add_subparsers(dest="runs_command", metavar="ACTION", required=True)

    def action(name: str, help: str, func, run: bool = True) -> argparse.ArgumentParser:
        a = rsub.add_parser(name, help=help)
        if run:
            a.add_argument("run", metavar="RUN", help="run directory or run id")
        a.add_argument("--root", default="runs", help="folder of the runs (default runs/)")
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


def _fmt(v, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


def _list(args: argparse.Namespace) -> int:
    infos = runs.list_runs(args.root)
    if args.json:
        print(json.dumps([{k: v for k, v in i.to_dict().items() if k != "status"} for i in infos], indent=2))
        return 0
    if not infos:
        print(f"no runs under {args.root}")
        return 0
    print(f"{'id':<40} {'state':<11} {'epoch':>7} {'val_acc':>8} {'val_f1':>8} {'time':>7}  source")
    for i in infos:
        state = f"{i.state}#{i.queue_position}" if i.queue_position else i.state
        dur = "-" if not i.duration_s else f"{i.duration_s:.0f}s" if i.duration_s < 90 else f"{i.duration_s / 60:.1f}m"
        print(f"{i.id:<40} {state:<11} {f'{i.epoch}/{i.epochs}':>7} {_fmt(i.best_val_acc):>8} "
              f"{_fmt(i.best_val_macro_f1):>8} {dur:>7}  {i.source}")
    return 0


def _show(args: argparse.Namespace) -> int:
    d = runs.resolve_run(args.run, args.root)
    info = runs.run_info(d)
    rows = runs.read_metrics(d)
    if args.json:
        print(json.dumps({**info.to_dict(), "metrics": rows}, indent=2, default=str))
        return 0
    print(f"{info.id}: {info.state}, epoch {info.epoch}/{info.epochs}, model {info.model}, source {info.source}")
    for r in rows:
        print("  " + " ".join(f"{k}={_fmt(v, '.4g') if isinstance(v, float) else v}" for k, v in r.items()))
    if info.error_tail:
        print(info.error_tail)
    return 0


def _stop(args: argparse.Namespace) -> int:
    info = runs.stop_run(args.run, args.root, wait=args.wait)
    print(json.dumps({"run_dir": str(info.run_dir), "state": info.state}) if args.json else
          f"{info.id}: {'stop requested' if info.state == 'running' else info.state}")
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
