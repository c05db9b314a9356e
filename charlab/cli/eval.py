"""`python -m charlab eval --run RUN [--source SOURCE] [--split test|val|train] [--restrict] [--json] [--out FILE]`

Evaluates a run directory, a checkpoint file (e.g. checkpoints/default.pt) or an ensemble
("runA+runB") on one split of a source, loaded with the CHECKPOINT's preprocessing and split
seed, and with labels mapped onto the model's classes by name. Prints accuracy, macro-F1,
top-5 and the most confused pairs; the results are cached in the run directory, so the app's
Errors page opens instantly afterwards.
"""
from __future__ import annotations

import argparse
import json
import sys

RUN_HELP = "a run directory (its best.pt), a checkpoint file such as checkpoints/default.pt, or A+B for an ensemble"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="accuracy, macro-F1 and confusions of a model on a data split",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, metavar="RUN", help=RUN_HELP)
    p.add_argument("--source", help="data source (default: the one the model was trained on)")
    p.add_argument("--split", choices=["test", "val", "train"], default="test", help="default: test")
    p.add_argument("--labels", metavar="FILE", help="label override file for the source's training data (default: the "
                   "one the model trained with; 'none' for the raw labels, 'auto' for the source's own)")
    p.add_argument("--restrict", action="store_true",
                   help="restrict the model's predictions to the classes the data holds (a 62-class model "
                        "read as a digit model on a digit set); macro-F1 always averages over those classes")
    p.add_argument("--top-pairs", type=positive_int, default=10, metavar="N", help="most confused pairs to list (default 10)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="default: cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", metavar="FILE", help="also write the full JSON report to FILE")
    p.set_defaults(func=_eval)


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (0 or -3 top classes mean nothing)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def progress_bar(enabled: bool):
    """A tqdm progress(done, total, msg) callback (shared with the training CLI), or None."""
    if not enabled:
        return None
    from .train import _TqdmProgress

    return _TqdmProgress(enabled=True)


def emit(obj, as_json: bool, text: str) -> None:
    print(json.dumps(obj, indent=2, default=str) if as_json else text)


def _eval(args: argparse.Namespace) -> int:
    from ..interpret import Interpretation, load_split
    from ..io import atomic_write_json
    from ..predict import load_predictor

    bar = progress_bar(sys.stderr.isatty() and not args.json)
    try:
        predictor = load_predictor(args.run, device=args.device)
        labels = "model"
        if args.labels is not None:
            from ..labels import resolve

            labels = resolve(args.labels, predictor.data_config_for(args.source).source)
        dataset, notes = load_split(predictor, args.source, args.split, progress=bar, labels=labels)
        interp = Interpretation.from_run(args.run, dataset, args.split, predictor=predictor, progress=bar)
        if args.restrict:
            interp = interp.restricted()
    finally:
        if bar is not None:
            bar.close()
    report = {"run": args.run, "checkpoints": [str(p) for p in predictor.paths],
              "source": predictor.data_config_for(args.source).source, **interp.report(args.top_pairs)}
    report["notes"] = notes + report["notes"]
    if args.out:
        atomic_write_json(args.out, report)
    lines = [f"model     {predictor.name}",
             f"data      {report['source']} [{args.split}]  n={interp.n}  classes={interp.num_classes}",
             f"accuracy  {report['accuracy']:.4f}",
             f"macro-F1  {report['macro_f1']:.4f}   over the {report['classes_present']} classes the data holds",
             f"top-5     {report['top5']:.4f}",
             f"errors    {report['errors']}   mean loss {report['mean_loss']:.4f}" + (
                 f"   ({report['absent_predictions']} predicted a class the data does not hold)"
                 if report["absent_predictions"] else "")]
    pairs = report["most_confused"]
    if pairs:
        lines.append("most confused (true -> predicted: count)")
        width = max(len(p["true"]) for p in pairs)
        lines += [f"  {p['true']:>{width}} -> {p['predicted']}: {p['count']}" for p in pairs]
    lines += [f"note: {n}" for n in report["notes"]]
    if args.out:
        lines.append(f"report written to {args.out}")
    emit(report, args.json, "\n".join(lines))
    return 0
