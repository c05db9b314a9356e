"""`python -m charlab models [PATTERN] [--json]`: the model zoo, with sizes and provenance."""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the registered models (name, parameters, options, report)")
    p.add_argument("pattern", nargs="?", default=None, help="shell glob over names, e.g. 'resnet*'")
    p.add_argument("--json", action="store_true", help="print a JSON list of model_info objects")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..errors import CharlabError
    from ..models import list_models, model_info

    names = list_models(args.pattern)
    if not names:
        raise CharlabError(f"no model matches {args.pattern!r}; models: {', '.join(list_models())}")
    infos = [model_info(n) for n in names]
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    width = max(len(n) for n in names)
    for i in infos:
        shape = "" if i["supports_non_square"] else "  (square inputs only)"
        opts = ", ".join(f"{k}={v!r}" for k, v in i["kwargs"].items()) or "no options"
        print(f"{i['name']:<{width}}  {i['params_62x28']:>11,} params  {i['description']}{shape}")
        print(f"{'':<{width}}  options: {opts}")
        print(f"{'':<{width}}  from: {i['report']}")
    return 0
