"""`python -m charlab ensemble --out FILE REF REF [REF …]`

Writes several trained models as ONE checkpoint file that loads as their ensemble: wherever a
checkpoint is accepted (the app's model picker, eval, predict, export, bench) the file's members
average their softmax probabilities, exactly as "A+B" does. The members must share classes and
preprocessing (seeds and architectures may differ). The shipped checkpoints/default.pt is built so:

    python -m charlab ensemble --out checkpoints/default.pt runs/s0 runs/s1 runs/s2
"""
from __future__ import annotations

import argparse

from .eval import RUN_HELP, emit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ensemble", help="write several checkpoints as one file that loads as their ensemble",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("members", nargs="+", metavar="REF", help=RUN_HELP.replace("A+B for an ensemble",
                                                                             "an ensemble file (adds all its members)"))
    p.add_argument("--out", required=True, metavar="FILE", help="file to write (replaced atomically)")
    p.add_argument("--json", action="store_true", help="print the written file's path, size and members as JSON")
    p.set_defaults(func=_ensemble)


def _ensemble(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..checkpoint import save_ensemble
    from ..predict import load_predictor, resolve_refs

    save_ensemble(args.out, [p for ref in args.members for p in resolve_refs(ref)])
    out = Path(args.out)
    pred = load_predictor(out)  # read back: what the app will load
    size = out.stat().st_size
    emit({"path": str(out), "bytes": size, "members": len(pred.models), "classes": pred.classes}, args.json,
         f"wrote {out} ({size / 1e6:.2f} MB): an ensemble of {len(pred.models)} {pred.config.model.name} "
         f"models, {pred.num_classes} classes")
    return 0
