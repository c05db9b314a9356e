"""`python -m charlab predict --run RUN IMAGE... [--top K] [--json]`

Raw image files of any size, mode and polarity get the checkpoint's own preprocessing
(grayscale, polarity, crop, pad, resize), then the top-K classes. A file that cannot be read
gets an error entry of its own; the others are still predicted (exit status 1 if any failed).
Where look-alike classes (charlab.lookalike: c/C, o/O/0 … as the model confuses them) share most of
the probability, the line starts with the group: "c or C 0.930 (c 0.510 · C 0.420)".
"""
from __future__ import annotations

import argparse
import sys

from .eval import RUN_HELP, emit, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="top-k classes of raw image files",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, metavar="RUN", help=RUN_HELP)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, BMP, ...)")
    p.add_argument("--top", type=positive_int, default=5, metavar="K", help="classes per image (default 5)")
    p.add_argument("--no-page", action="store_true",
                   help="the files' frames are no pages (photos, framed at will): a model whose side vector is "
                        "optional (DataConfig.side_dropout, as the shipped default's) reads the pixels alone, as "
                        "the Draw page reads an upload (default: each file's frame is its page, as a tablet sheet)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="default: cpu")
    p.add_argument("--json", action="store_true", help="print a JSON list of {path, top: [{label, prob}]}")
    p.set_defaults(func=_predict)


def predict_files(predictor, paths: list[str], top: int = 5, lookalikes=None, page: bool = True) -> list[dict]:
    """[{path, top: [{label, prob}]}] or [{path, error}] per file, in the order given; with
    `lookalikes` (charlab.lookalike), also {group: {label: "c or C", prob, split}} where look-alike
    twins share most of the probability. `page=False`: the frames are no pages (Predictor.explain)."""
    import numpy as np
    import torch

    from ..errors import CharlabError
    from ..data import open_image

    results: list[dict] = [{"path": p} for p in paths]
    ok, arrays, sides = [], [], []
    for i, path in enumerate(paths):
        try:
            arr, side = predictor.prepare_side(open_image(path))  # side: the file's own frame is its page
            arrays.append(arr)
            sides.append(side)
            ok.append(i)
        except CharlabError as e:
            results[i]["error"] = str(e)
        except Exception as e:  # a decoder or preprocessing failure on one odd file must not stop the rest
            results[i]["error"] = f"{path}: {type(e).__name__}: {e}"
    if ok:
        from ..lookalike import grouped_top

        batch = torch.from_numpy(np.stack(arrays)).unsqueeze(1)  # N×1×H×W uint8
        probs = predictor.probs(batch, side=predictor.read_side(np.stack(sides) if predictor.side_inputs else None,
                                                                 page))  # N×C
        for i, row, tops in zip(ok, probs, predictor.topk(probs, top)):
            results[i]["top"] = [{"label": label, "prob": prob} for label, prob in tops]
            g = grouped_top(row, predictor.classes, lookalikes) if lookalikes is not None else None
            if g is not None and len(g.split) > 1:  # twins share the probability: name them together
                results[i]["group"] = {"label": g.label, "prob": g.prob,
                                       "split": [{"label": c, "prob": p} for c, p in g.split]}
    return results


def _predict(args: argparse.Namespace) -> int:
    from ..predict import load_predictor

    from ..lookalike import for_predictor

    predictor = load_predictor(args.run, device=args.device)
    results = predict_files(predictor, args.images, args.top, lookalikes=for_predictor(predictor), page=not args.no_page)

    def line(r: dict) -> str:
        g = r.get("group")
        head = (f"{g['label']} {g['prob']:.3f} (" + " · ".join(f"{t['label']} {t['prob']:.3f}" for t in g["split"])
                + ")  |  ") if g else ""
        return f"{r['path']}: {head}" + "  ".join(f"{t['label']} {t['prob']:.3f}" for t in r["top"])

    lines = [line(r) for r in results if "error" not in r]
    if lines or args.json:
        emit(results, args.json, "\n".join(lines))
    failed = [r for r in results if "error" in r]
    if not args.json:  # the JSON list holds its errors; in text they go where errors go
        for r in failed:
            print(f"error: {r['error']}", file=sys.stderr)
    return 1 if failed else 0
