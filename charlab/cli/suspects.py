"""`python -m charlab suspects --source SOURCE [--reference REF] [--folds K] [--labels FILE] [--json]`

Says what is wrong with the labels (diagnosis: clean, noisy, swapped, scrambled or complementary)
and lists the images whose label looks wrong, with the label they most likely have.

With --reference REF (a run, a checkpoint such as checkpoints/synthetic.pt, or A+B) every image
is scored by that model, which never saw these labels: the only way to see whole classes swapped
(a model trained on swapped labels learns the swap). Classes are matched by name; a reference
with more classes than the data is restricted to the data's.

Without it, confident learning on out-of-fold models (the default): with --folds K >= 2
(the default, 3) it trains K models, each on the other folds, so every image is scored by a
model that never saw its label; --folds 1 trains once and scores in-sample, which is quicker
but understates label errors (the output says so). Lists the suspects, most suspect first,
the (given -> likely) pairs with both directions of a pair on one line (a systematic swap of
two classes is one line), and the estimated share of wrong labels.
"""
from __future__ import annotations

import argparse
import sys

from .eval import RUN_HELP, emit, progress_bar
from .labels import add_option as add_labels_option


def register(sub: argparse._SubParsersAction) -> None:
    from ..config import TrainConfig

    d = TrainConfig()
    p = sub.add_parser("suspects", help="label-issue suspects: images whose label the model confidently contradicts",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", required=True, help="data source whose (training) labels to check")
    p.add_argument("--reference", metavar="REF", help="score with this model instead of training: " + RUN_HELP)
    add_labels_option(p)
    p.add_argument("--folds", type=int, default=3, metavar="K", help="out-of-fold models (default 3; 1 = in-sample)")
    p.add_argument("--model", default=d.model.name, help=f"model to train (default {d.model.name})")
    p.add_argument("--epochs", type=int, default=12, metavar="N", help="epochs per model (default 12)")
    p.add_argument("--image-size", type=int, default=d.data.image_size, help=f"default {d.data.image_size}")
    p.add_argument("--augment", metavar="PRESET", help="augmentation preset (default none)")
    p.add_argument("--batch-size", type=int, default=64, help="default 64 (small sets need several steps per epoch)")
    p.add_argument("--lr", type=float, default=d.lr, help=f"default {d.lr}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=50, metavar="N", help="suspects to list (default 50; 0 = all)")
    p.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"], help="default: auto")
    p.add_argument("--json", action="store_true",
                   help="print {diagnosis: {kind, text}, classes: [{given, likely, share}], suspects: [{path, source_path, "
                        "hash, given, likely, score, lookalike}], pairs: [{given, likely, count}], share, in_sample, "
                        "n_lookalike, lookalikes}")
    p.set_defaults(func=_suspects)


def _suspects(args: argparse.Namespace) -> int:
    from ..config import DataConfig, ModelConfig, TrainConfig
    from ..data import load_source
    from ..errors import CharlabError
    from ..labels import apply, resolve
    from ..suspects import audit, in_sample_probs, out_of_fold_probs, reference_probs

    if args.folds < 1:
        raise CharlabError(f"--folds must be at least 1, got {args.folds}")
    labels = resolve(args.labels, args.source)
    # No weight EMA: the recipe's average helps long runs, but k short fits of a few dozen steps
    # each end before it settles (measured: the misfiled pair of the CLI test was no longer found).
    cfg = TrainConfig(data=DataConfig(source=args.source, image_size=args.image_size, seed=args.seed, labels=labels),
                      model=ModelConfig(name=args.model), epochs=args.epochs, batch_size=args.batch_size,
                      lr=args.lr, seed=args.seed, device=args.device, ema_decay=0.0)
    from ..augment import get_preset

    # Explicitly "none" unless asked: TrainConfig's default is the accuracy recipe's strong preset,
    # which slows these short fits down so much that confident contradictions never form.
    cfg.augment = get_preset(args.augment or "none")
    cfg.validate()
    bar = progress_bar(sys.stderr.isatty() and not args.json)
    notes = []
    lookalikes = None
    try:
        predictor = None
        if args.reference:
            from ..predict import load_predictor

            predictor = load_predictor(args.reference, device="cpu" if args.device == "auto" else args.device)
            cfg.data = predictor.data_config_for(args.source)  # the images as the reference was trained to see them
            cfg.data.labels = labels
        dataset = load_source(args.source, cfg.data, split="train", progress=bar)
        if dataset is None or len(dataset) == 0:
            raise CharlabError(f"{args.source!r} holds no training images")
        dataset, lrep = apply(dataset, labels)
        notes += lrep.notes()
        if predictor is not None:
            probs, more = reference_probs(predictor, dataset)
            notes += more
            from ..lookalike import for_audit

            lookalikes = for_audit(predictor)
        elif args.folds >= 2:
            probs = out_of_fold_probs(cfg, dataset, folds=args.folds, progress=bar)
        else:
            probs = in_sample_probs(cfg, dataset, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    report = audit(probs, dataset, reference=args.reference, in_sample=predictor is None and args.folds < 2,
                   seed=args.seed, lookalikes=lookalikes)
    out = report.to_dict(limit=args.limit or None)
    out["source"] = args.source
    out["labels"] = lrep.to_dict() if labels else None
    out["notes"] = notes
    d = report.diagnosis
    real = len(report.suspects) - report.n_lookalike
    grouped = d.evidence.get("agreement_with_lookalikes")
    lines = [f"diagnosis: {d.kind}: {d.text}",
             f"{real} suspects of {report.n} images; estimated share of wrong labels {report.share:.1%}; "
             f"the {'reference' if args.reference else 'model'} agrees with {report.accuracy:.1%} of the labels"
             + (f" ({grouped:.1%} counting look-alike twins)" if grouped is not None else ""),
             f"note: {report.note}"] + [f"note: {n}" for n in notes]
    if report.n_lookalike:
        lines.append(f"{report.n_lookalike} case/look-alike ambiguities ({' '.join('/'.join(g) for g in report.lookalikes)}) "
                     f"are listed but not counted as wrong, nor in the pairs, nor accepted by `labels apply`")
    moved = [r for r in d.classes.itertuples() if r.likely != r.given and not report.twins(r.given, r.likely)]
    if moved:
        lines.append("classes whose images mostly look like another (given -> likely: share; look-alike twins left out)")
        lines += [f"  {r.given} -> {r.likely}: {r.share:.0%} of {r.n}" for r in moved[:15]]
    if len(report.pairs):
        lines.append("pairs (given -> likely: count; both directions of a pair on one line)")
        for p in out["pairs"][:15]:
            lines.append(f"  {p['given']} -> {p['likely']}: {p['count']}  ({p['given_to_likely']} / {p['likely_to_given']} reversed)")
    if out["suspects"]:
        lines.append("most suspect (score = p(likely) - p(given))")
        lines += [f"  {s['score']:.3f}  {s['given']} -> {s['likely']}  {s['path']}" + ("  (look-alike)" if s.get("lookalike") else "")
                  for s in out["suspects"]]
    emit(out, args.json, "\n".join(lines))
    return 0
