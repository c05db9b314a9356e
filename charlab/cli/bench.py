"""`python -m charlab bench NAME [--json]`: run one benchmark from charlab.bench."""
from __future__ import annotations

import argparse
import importlib
import json
import pkgutil

from .. import bench


def _names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark (see BENCHMARKS.md)")
    bsub = p.add_subparsers(dest="bench_name", metavar="NAME", required=True)
    for name in _names():
        mod = importlib.import_module(f"{bench.__name__}.{name}")
        doc = (mod.__doc__ or name).strip().splitlines()[0]
        bp = bsub.add_parser(name, help=doc, description=mod.__doc__)
        bp.add_argument("--json", action="store_true", help="print one JSON object")
        if hasattr(mod, "add_arguments"):
            mod.add_arguments(bp)
        bp.set_defaults(func=_run, bench_module=mod)


def _run(args: argparse.Namespace) -> int:
    result = args.bench_module.run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        width = max((len(k) for k in result), default=0)
        for k, v in result.items():
            print(f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    return 0
