"""`python -m charlab bench NAME [--json] [options]`: run one benchmark from charlab.bench.

Bench modules import torch and friends; they are imported only when their benchmark runs,
so every other command (and `bench --help`) starts without paying for them.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import json
import pkgutil
from pathlib import Path

from .. import bench


def _names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_"))


def _summary(name: str) -> str:
    """First docstring line, read from the source without importing the module."""
    path = Path(bench.__path__[0]) / f"{name}.py"
    doc = ast.get_docstring(ast.parse(path.read_text())) or name
    return doc.strip().splitlines()[0]


def register(sub: argparse._SubParsersAction) -> None:
    names = _names()
    listing = "\n".join(f"  {n:<10} {_summary(n)}" for n in names)
    p = sub.add_parser("bench", help="run a benchmark (see BENCHMARKS.md)", add_help=False,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description=f"benchmarks:\n{listing}\n\n`bench NAME --help` shows a benchmark's options.")
    p.add_argument("bench_name", nargs="?", metavar="NAME", help=", ".join(names))
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.add_argument("-h", "--help", action="store_true", dest="bench_help")
    p.set_defaults(func=_run, bench_parser=p)


def _run(args: argparse.Namespace) -> int:
    names = _names()
    if args.bench_name is None:
        args.bench_parser.print_help()
        return 0 if args.bench_help else 2
    if args.bench_name not in names:
        args.bench_parser.error(f"unknown benchmark {args.bench_name!r}; valid: {', '.join(names)}")
    mod = importlib.import_module(f"{bench.__name__}.{args.bench_name}")
    bp = argparse.ArgumentParser(prog=f"python -m charlab bench {args.bench_name}", description=mod.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    bp.add_argument("--json", action="store_true", help="print one JSON object")
    if hasattr(mod, "add_arguments"):
        mod.add_arguments(bp)
    opts = bp.parse_args((["--help"] if args.bench_help else []) + list(args.rest))
    result = mod.run(opts)
    if opts.json:
        print(json.dumps(result, indent=2))
    else:
        width = max((len(k) for k in result), default=0)
        for k, v in result.items():
            print(f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    return 0
