"""`python -m charlab export --run REF --format onnx|torchscript --out FILE`

Writes one file that runs without charlab: the model (an ensemble "A+B" becomes ONE graph that
averages its members' probabilities), with the class names, input shape, polarity and the
preprocessing steps inside it (ONNX metadata_props; TorchScript extra file charlab.json).
Input: float32 N×1×H×W in [0, 1], ink bright on dark, any batch size. Output: N×C probabilities.

    python -m charlab export --run checkpoints/default.pt --out default.onnx
    python -m charlab export --run runs/A+runs/B --format torchscript --out ensemble.pt
"""
from __future__ import annotations

import argparse
import json

from .eval import RUN_HELP, emit


def register(sub: argparse._SubParsersAction) -> None:
    # charlab.export (and its FORMATS registry) imports torch: registering this command must not,
    # since every command's parser is built, and `runs list` must start without torch
    p = sub.add_parser("export", help="write a run, checkpoint or ensemble as an ONNX or TorchScript file",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, metavar="REF", help=RUN_HELP)
    p.add_argument("--format", default=None, metavar="FORMAT",
                   help="onnx (the default) or torchscript: charlab.export.FORMATS; an unknown name lists the valid ones")
    p.add_argument("--out", required=True, metavar="FILE", help="file to write (replaced atomically)")
    p.add_argument("--json", action="store_true", help="print the written file's path, size and metadata as JSON")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from ..export import FORMATS, export_model, read_metadata

    args.format = args.format or FORMATS.names()[0]
    FORMATS.get(args.format)  # an unknown format fails here, listing the valid ones
    out = export_model(args.run, args.format, args.out)
    meta = read_metadata(out)  # read back from the file: what a deployer will find in it
    size = out.stat().st_size
    classes = json.loads(meta.get("classes", "[]"))
    text = (f"wrote {out} ({args.format}, {size / 1e6:.1f} MB): {len(classes)} classes, input "
            f"{meta.get('input', '?')}, members {', '.join(json.loads(meta.get('members', '[]')))}")
    emit({"path": str(out), "format": args.format, "bytes": size, "metadata": meta}, args.json, text)
    return 0
