"""`python -m charlab digitsum --digits RUN --source digitsum:... [--end2end RUN] [--split test] [--json]`

Evaluates the structured approach to the digit-sum task: a per-digit classifier (RUN: a run
directory or checkpoint whose classes include 0-9) reads each digit slot of the composites
and the predicted sum is the sum of the most likely digits. Prints the
sum accuracy, the per-digit accuracy and, with --end2end, an end-to-end sum classifier's
accuracy on the very same images for comparison.
"""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("digitsum", help="evaluate the structured digit-sum approach (per-digit model, summed)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--digits", required=True, metavar="RUN", help="per-digit classifier: run dir or checkpoint")
    p.add_argument("--source", default="digitsum", help="a digitsum source (default: digitsum)")
    p.add_argument("--split", choices=["test", "val", "train"], default="test", help="default: test")
    p.add_argument("--end2end", metavar="RUN", help="an end-to-end sum classifier to compare on the same images")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_digitsum)


def _digitsum(args: argparse.Namespace) -> int:
    from ..digitsum import predict_structured
    from ..errors import CharlabError
    from ..interpret import load_split
    from ..metrics import accuracy
    from ..predict import load_predictor

    if not args.source.startswith("digitsum"):
        raise CharlabError(f"--source must be a digitsum source (digitsum:k=4,...,from=...), got {args.source!r}")
    digits = load_predictor(args.digits)
    dataset, notes = load_split(digits, args.source, args.split)
    report = {"source": args.source, "split": args.split, "digits_model": digits.name,
              **predict_structured(digits, dataset).report(dataset)}
    if args.end2end:
        e2e = load_predictor(args.end2end)
        e2e_data, _ = load_split(e2e, args.source, args.split)
        # The end-to-end model's classes are the sums as text; map its argmax back to numbers.
        pred = e2e.predict_dataset(e2e_data).argmax(axis=1)
        report["end2end_model"] = e2e.name
        report["end2end_sum_accuracy"] = accuracy(e2e_data.labels.numpy(),
                                                  [int(e2e.classes[i]) for i in pred])
    report["notes"] = notes
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"structured ({digits.name}) on {args.source} [{args.split}], n={report['n']}")
    print(f"  sum accuracy         {report['sum_accuracy']:.4f}  (argmax of the sum's distribution: "
          f"{report['marginal_sum_accuracy']:.4f})")
    if "digit_accuracy" in report:
        print(f"  per-digit accuracy   {report['digit_accuracy']:.4f}")
    if args.end2end:
        print(f"end to end ({report['end2end_model']}): sum accuracy {report['end2end_sum_accuracy']:.4f}")
    for n in notes:
        print(f"note: {n}")
    return 0
