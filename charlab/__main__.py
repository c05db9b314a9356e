"""`python -m charlab …`: data info, train, runs, eval, predict, suspects, sweep, bench."""
from __future__ import annotations

import os

# Before torch loads libgomp: OpenMP threads that spin while waiting for a partner thread stall
# badly when the 2 cores are shared (the app, a background run, other users): measured 5.0 s vs
# 1.1 s per kaggle_cnn step under load (BENCHMARKS.md, Augmentation). A user's setting wins.
os.environ.setdefault("GOMP_SPINCOUNT", "0")

import argparse  # noqa: E402
import importlib
import pkgutil
import sys

from . import cli
from .errors import CharlabError

# Order of the subcommands in --help; discovered modules not listed here come after.
_ORDER = ["data", "train", "runs", "eval", "predict", "suspects", "sweep", "bench"]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI, or with `only` (a command whose module is cli/<only>.py) just that
    command: a command then pays for its own imports alone (`runs list` stays free of torch,
    whatever another command's registration imports)."""
    parser = argparse.ArgumentParser(prog="python -m charlab", description="charlab: handwritten character recognition lab")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = [m.name for m in pkgutil.iter_modules(cli.__path__) if not m.name.startswith("_")]
    names.sort(key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n))
    if only in names:
        names = [only]
    for name in names:
        importlib.import_module(f"{cli.__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv and not argv[0].startswith("-") else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = int(args.func(args) or 0)
        sys.stdout.flush()  # here, so a reader that went away is caught below, not at interpreter exit
        return rc
    except CharlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`… | head`): stop quietly. Point stdout at devnull so the
        # interpreter's final flush does not raise the same error again on the way out.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by it


if __name__ == "__main__":
    sys.exit(main())
