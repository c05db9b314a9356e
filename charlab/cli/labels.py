"""`python -m charlab labels apply|show|undo`: label override files from the shell.

    python -m charlab suspects --source set.zip --reference checkpoints/synthetic.pt --json > report.json
    python -m charlab labels apply --suspects report.json --min-score 0.5 --out set-labels.json
    python -m charlab train --source set.zip --labels set-labels.json
    python -m charlab labels show set-labels.json
    python -m charlab labels undo set-labels.json          # reverts the last step (a whole `apply`)

`--labels FILE` on data info, train, eval and suspects applies a file; `--labels auto` uses the
file that follows the source (the app's, under user_data/labels/).
"""
from __future__ import annotations

import argparse
import json

LABELS_HELP = ("label override file (python -m charlab labels ...; the app's Labels page) applied to the training "
               "data; 'auto' = the source's own file under user_data/labels/ if there is one")


def add_option(p: argparse.ArgumentParser) -> None:
    """The `--labels FILE` option every data-loading command shares."""
    p.add_argument("--labels", metavar="FILE", default=None, help=LABELS_HELP)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("labels", help="label override files: turn a suspects report into decisions, show, undo",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    lsub = p.add_subparsers(dest="labels_command", metavar="ACTION", required=True)
    ap = lsub.add_parser("apply", help="relabel the suspects of a `suspects --json` report to their likely label")
    ap.add_argument("--suspects", required=True, metavar="REPORT.json", help="the output of `charlab suspects --json`")
    ap.add_argument("--min-score", type=float, default=0.5, metavar="S",
                    help="accept suspects scoring at least S (default 0.5; score = p(likely) - p(given)); "
                         "look-alike ambiguities (c read as C) are never accepted in bulk")
    ap.add_argument("--out", required=True, metavar="FILE", help="override file to write (added to if it exists)")
    ap.set_defaults(func=_apply)
    sh = lsub.add_parser("show", help="what an override file holds")
    sh.add_argument("file")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=_show)
    un = lsub.add_parser("undo", help="revert the last step (or the last decision about one image)")
    un.add_argument("file")
    un.add_argument("--path", help="the image (as the source spells it) whose last decision to revert")
    un.set_defaults(func=_undo)


def _apply(args: argparse.Namespace) -> int:
    from ..errors import CharlabError
    from ..labels import LabelOverrides
    from ..suspects import decisions_from_report

    try:
        with open(args.suspects, encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        raise CharlabError(f"cannot read the suspects report {args.suspects}: {e}") from None
    decisions = decisions_from_report(report, args.min_score)
    ov = LabelOverrides.load(args.out, source=report.get("source", ""))
    n = ov.decide(decisions, what=f"accept {len(decisions)} suspects scoring >= {args.min_score:g} "
                                  f"from {args.suspects}")
    ov.save()
    twins = sum(1 for x in report.get("suspects", []) if x.get("lookalike") and x.get("score", 0) >= args.min_score)
    print(f"{n} relabelled of {len(report.get('suspects', []))} suspects in {args.suspects} "
          f"(score >= {args.min_score:g}); {len(ov)} decisions in {args.out}"
          + (f"; {twins} look-alike ambiguities (c read as C) left for review one by one" if twins else ""))
    return 0


def _show(args: argparse.Namespace) -> int:
    from ..errors import CharlabError
    from ..labels import LabelOverrides

    from pathlib import Path

    if not Path(args.file).is_file():
        raise CharlabError(f"label override file {args.file} does not exist")
    ov = LabelOverrides.load(args.file)
    if args.json:
        print(json.dumps(ov.to_dict(), indent=2, ensure_ascii=False))
        return 0
    c = ov.counts()
    print(f"{args.file}: {len(ov)} decisions ({c['relabel']} relabel, {c['exclude']} exclude, {c['keep']} keep)"
          + (f" on {ov.source}" if ov.source else ""))
    for e in list(ov.entries.values())[:30]:
        what = f"-> {e['label']}" if e["action"] == "relabel" else e["action"]
        print(f"  {e['path']}  {e.get('given', '?')} {what}  ({e['time']})")
    if len(ov) > 30:
        print(f"  ... and {len(ov) - 30} more (--json lists all)")
    if ov.last_step():
        print(f"undo would revert: {ov.last_step()}")
    return 0


def _undo(args: argparse.Namespace) -> int:
    from ..errors import CharlabError
    from ..labels import LabelOverrides

    ov = LabelOverrides.load(args.file)
    said = ov.undo(args.path)
    if said is None:
        raise CharlabError(f"nothing to undo in {args.file}" + (f" for {args.path}" if args.path else ""))
    ov.save()
    print(f"{said}; {len(ov)} decisions left in {args.file}")
    return 0
