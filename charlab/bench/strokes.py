"""Images and canvas strokes: every candidate measured on Chars74K's test images AND on the same characters redrawn as Draw-canvas pen strokes.

The stroke test set is testPart1's 930 images, each thinned to its skeleton, traced into
polylines, placed on the Draw page's 280-px canvas as written on its page, and redrawn with the
page's default pen (20 px, round, constant width): what the Draw page would receive if the same
writer drew the character there (`charlab.data.strokes`). Both sets then go through the
checkpoint's own preprocessing.

Candidates (`--candidates a,b`, see CANDIDATES) are trained on trainPart1 only:
- `default`: the default recipe on the real images;
- `strokes`: the same, with 2 stroke redrawings of every training image at random pen widths
  (DataConfig.strokes);
- `wide`: `strokes` with a wider charnet (width 24);
- `norm`: stroke-width normalisation (DataConfig.stroke_norm): every image, in training and at
  prediction, is thinned and redrawn with one pen width, so ink and canvas strokes look alike;
- `pretrain`: `strokes`, starting from a charnet pretrained on the synthetic handwriting in the
  same run (the pretraining's CPU time is counted);
- `mix`: `strokes` with synthetic handwriting mixed into the training split;
- `side`: `strokes`, and the head also reads the ink's box on its page before the crop (size,
  position, aspect; DataConfig.side_inputs, charlab.data.geometry); the stroke set's box is
  measured on the canvas, the page it is drawn on;
- `side_pen`: `side` with the ink's mean stroke width taken off the box's height and width, so
  a canvas pen of 6 or 40 px and a thin tablet pen give the same size for the same centre line;
- `side_pen_optional`: `side_pen` trained with a quarter of the side vectors hidden
  (DataConfig.side_dropout), so the same model also reads images without a page (MNIST, CSV);
- `side_pen_pretrain`: `side_pen` starting from the `pretrain` candidate's synthetic charnet:
  the image body transfers, the side MLP and the head start new (synthetic glyphs have no page);
- `distill`: `strokes`, also learning the softened predictions of `--teacher FILE` (an ensemble
  file of `charlab ensemble`; TrainConfig.teacher). With `--on val` the teacher's members must
  have held out the same validation split, or its decision would rest on images it saw.
- `side_distill`: `side` with a `--teacher` as `distill` has.
`--checkpoints a.pt,b.pt` measures shipped models (no training), e.g. checkpoints/default.pt
and checkpoints/synthetic.pt.

`--on val` (with `--val-fraction 0.15`) measures on the validation split of trainPart1 and its
stroke redrawing instead: the split decisions are taken on (`--last-epoch` trains them as the
final fit does: all epochs, the last kept); `--on test` (default) is the one test measurement
per candidate. Reported per set: top-1, macro-F1, case-insensitive accuracy.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from ..registry import Registry
from .accuracy import _measure, add_chars74k_argument, chars74k_train_zip

CANDIDATES: Registry[Callable] = Registry("stroke benchmark candidate")
PRETRAIN_EPOCHS = 15  # synthetic pretraining epochs (12,400 images: ~2x a Chars74K fine-tune's steps at 15)
MIX_PER_CLASS = 40  # synthetic images per class mixed into the training split (as many as the real ones)


@CANDIDATES.register("default")
def _default(cfg, ctx):
    """The default recipe on the real images."""
    return cfg


@CANDIDATES.register("strokes")
def _strokes(cfg, ctx):
    """+ 2 stroke redrawings of every training image at random pen widths (10-32 canvas px)."""
    cfg.data.strokes = 2
    return cfg


@CANDIDATES.register("wide")
def _wide(cfg, ctx):
    """`strokes` with a wider charnet (width 24: 2.2x the parameters and the compute of width 16)."""
    cfg.data.strokes = 2
    cfg.model.kwargs = {**cfg.model.kwargs, "width": 24}
    return cfg


@CANDIDATES.register("norm")
def _norm(cfg, ctx):
    """Stroke-width normalisation at training and prediction: every image's ink redrawn as its skeleton with one pen."""
    cfg.data.stroke_norm = 0.08
    return cfg


@CANDIDATES.register("pretrain")
def _pretrain(cfg, ctx):
    """`strokes`, starting from a charnet pretrained on synthetic handwriting in the same run."""
    cfg.data.strokes = 2
    cfg.init_from = str(ctx["pretrained"]())
    return cfg


@CANDIDATES.register("mix")
def _mix(cfg, ctx):
    """`strokes` with 40 synthetic images per class mixed into the training split."""
    cfg.data.strokes = 2
    ctx["mix"] = True
    return cfg


def _taught(cfg, ctx):
    """`cfg` also learning from the --teacher checkpoint (checked for a validation decision)."""
    cfg.teacher = ctx["teacher"](cfg)
    return cfg


@CANDIDATES.register("distill")
def _distill(cfg, ctx):
    """`strokes`, also learning the softened predictions of the --teacher checkpoint (an ensemble distilled into one model)."""
    return _taught(_strokes(cfg, ctx), ctx)


@CANDIDATES.register("side")
def _side(cfg, ctx):
    """`strokes`, and the head also reads the ink's box on its page (size, position, aspect; the recipe `side`)."""
    from ..recipes import get_recipe

    cfg.data.strokes, cfg.data.side_inputs = 2, get_recipe("side").data.side_inputs
    return cfg


@CANDIDATES.register("side_distill")
def _side_distill(cfg, ctx):
    """`side`, also learning the softened predictions of the --teacher checkpoint (e.g. an ensemble of `side` seeds)."""
    return _taught(_side(cfg, ctx), ctx)


@CANDIDATES.register("side_pen")
def _side_pen(cfg, ctx):
    """`side` with the stroke width taken off the box (side inputs "pen_box"): the same numbers for any pen."""
    cfg.data.strokes, cfg.data.side_inputs = 2, "pen_box"
    return cfg


@CANDIDATES.register("side_pen_optional")
def _side_pen_optional(cfg, ctx):
    """`side_pen` with a quarter of the side vectors hidden in training (DataConfig.side_dropout; the recipe of that name)."""
    from ..recipes import get_recipe

    cfg.data.side_dropout = get_recipe("side_pen_optional").data.side_dropout
    return _side_pen(cfg, ctx)


@CANDIDATES.register("side_pen_pretrain")
def _side_pen_pretrain(cfg, ctx):
    """`side_pen` on the body of a charnet pretrained on synthetic handwriting (its side MLP and head start new)."""
    cfg.init_from = str(ctx["pretrained"]())
    return _side_pen(cfg, ctx)


def check_teacher_split(teacher: str, cfg) -> None:
    """A teacher for a validation decision must not have trained on those validation images:
    each of its members must have held out the same split of the same source."""
    from ..checkpoint import load_members

    for k, m in enumerate(load_members(teacher), 1):
        d = m.config.data
        if (Path(d.source).name, d.val_fraction, d.seed) != (Path(cfg.data.source).name, cfg.data.val_fraction,
                                                             cfg.data.seed):
            raise SystemExit(f"--teacher {teacher}: member {k} trained on {d.source} with val_fraction "
                             f"{d.val_fraction}, seed {d.seed}; measuring on validation needs a teacher that held out "
                             f"the same split (val_fraction {cfg.data.val_fraction}, seed {cfg.data.seed})")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_chars74k_argument(p)
    p.add_argument("--candidates", default="default,strokes",
                   help=f"comma-separated, of: {', '.join(CANDIDATES.names())} (default: default,strokes)")
    p.add_argument("--checkpoints", default="", help="comma-separated checkpoints to measure as they are (no training)")
    p.add_argument("--recipe", default="default", help="the base recipe of every candidate (default: default)")
    p.add_argument("--epochs", type=int, help="override the recipe's epochs (and the synthetic pretraining's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--members", type=int, default=1, help="train K seeds per candidate and measure their ensemble too")
    p.add_argument("--val-fraction", type=float, default=0.0,
                   help="validation share of trainPart1 (default 0: the final fit on all 2,480 images, last epoch)")
    p.add_argument("--strokes", type=int, default=None, metavar="K",
                   help="stroke redrawings per training image in every candidate that adds them (default: 2)")
    p.add_argument("--pens", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="pen widths of those redrawings, canvas px (default: DataConfig.stroke_pens, 10 32)")
    p.add_argument("--image-size", type=int, default=None, metavar="S",
                   help="model input side of every candidate (default: the recipe's, 28)")
    p.add_argument("--last-epoch", action="store_true",
                   help="train the recipe's fixed epochs and keep the last one also with a validation split: the "
                        "final fit's protocol, so a validation decision is about the model that would ship "
                        "(default: early stopping on validation accuracy, as the recipe does)")
    p.add_argument("--on", choices=["test", "val"], default="test", help="measure on the test split (default) "
                   "or on the validation split (needs --val-fraction > 0)")
    p.add_argument("--pen", type=float, default=None, help="pen width of the stroke set (default: the Draw page's, 20)")
    p.add_argument("--teacher", metavar="CKPT", help="the teacher of the `distill` candidate: a checkpoint or "
                   "ensemble file (with --on val, trained on the same split)")
    p.add_argument("--distill-weight", type=float, default=None, help="the teacher's share of the loss "
                   "(default: TrainConfig's)")
    p.add_argument("--distill-temperature", type=float, default=None, help="softmax temperature (default: TrainConfig's)")
    p.add_argument("--keep", metavar="DIR", help="keep run directories (and the pretrained net) under DIR")


def _stroke_set(ds, cfg, pen, progress=None):
    from ..data.strokes import stroke_dataset

    return stroke_dataset(ds, cfg, pen, progress=progress)


def _both(probs_img, probs_str, img, strokes, classes) -> dict:
    return {"images": _measure(probs_img, img, classes), "strokes": _measure(probs_str, strokes, classes)}


def measure_checkpoint(ref: str, train_zip: Path, pen: float, progress=None) -> dict:
    """A shipped checkpoint on testPart1's images and their stroke redrawing, in its own preprocessing."""
    import torch

    from ..data import align_classes, load_source
    from ..predict import load_predictor

    t0 = time.perf_counter()
    pred = load_predictor(ref)
    load_s = time.perf_counter() - t0
    cfg = pred.data_config_for(str(train_zip))
    test = align_classes(load_source(str(train_zip), cfg, split="test", progress=progress), pred.classes)
    strokes = _stroke_set(test, cfg, pen, progress)
    p_img = torch.from_numpy(pred.predict_dataset(test))
    p_str = torch.from_numpy(pred.predict_dataset(strokes))
    return {"checkpoint": ref, "model": pred.config.model.name, "n_test": len(test), "load_seconds": round(load_s, 3),
            "size_mb": round(sum(Path(p).stat().st_size for p in pred.paths) / 1e6, 2),
            **_both(p_img, p_str, test, strokes, pred.classes)}


def _splits_for(cfg, ctx, progress):
    """The candidate's splits, with synthetic images mixed into the training split when asked."""
    import torch

    from ..data import CharDataset, load_source, load_splits
    from ..data.splits import align_classes

    splits = load_splits(cfg.data, progress=progress)
    if ctx.get("mix"):
        from dataclasses import replace

        syn_cfg = replace(cfg.data, source=f"synthetic:n={MIX_PER_CLASS}", strokes=0)
        syn = align_classes(load_source(syn_cfg.source, syn_cfg, split="train", progress=progress),
                            splits.train.classes, what="synthetic")
        t = splits.train
        splits.train = CharDataset(images=torch.cat([t.images, syn.images]), labels=torch.cat([t.labels, syn.labels]),
                                   classes=list(t.classes), source=t.source)
        splits.notes.append(f"mixed {len(syn)} synthetic images into the training split")
    return splits


def run(args: argparse.Namespace) -> dict:
    import torch

    from ..cli.train import _TqdmProgress
    from ..data.strokes import PEN_PX
    from ..recipes import get_recipe
    from ..runs import RunDir, new_run_id
    from ..training import evaluate, fit

    train_zip = chars74k_train_zip(args)
    pen = args.pen if args.pen is not None else PEN_PX
    if args.on == "val" and not args.val_fraction > 0:
        raise SystemExit("--on val needs --val-fraction > 0")
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="charlab-bench-strokes-"))
    root.mkdir(parents=True, exist_ok=True)
    bar = _TqdmProgress(enabled=sys.stderr.isatty(), stream=sys.stderr)
    out: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
                 "on": args.on, "pen": pen, "val_fraction": args.val_fraction, "candidates": {}, "checkpoints": {}}
    pretrain_cpu = {"s": 0.0}

    def pretrained() -> Path:
        path = root / "synthetic-charnet.pt"
        if not path.exists():
            t0 = time.process_time()
            cfg = get_recipe(args.recipe, source="synthetic", seed=args.seed, epochs=args.epochs or PRETRAIN_EPOCHS)
            res = fit(cfg, root / new_run_id("pretrain"), progress=bar)
            shutil.copy(RunDir(res.run_dir).best, path)
            pretrain_cpu["s"] = time.process_time() - t0
        return path

    def teacher(cfg) -> str:
        if not args.teacher:
            raise SystemExit("candidate distill needs --teacher CKPT (e.g. an ensemble file: python -m charlab ensemble)")
        if args.on == "val":
            check_teacher_split(args.teacher, cfg)
        for name in ("distill_weight", "distill_temperature"):
            if getattr(args, name) is not None:
                setattr(cfg, name, getattr(args, name))
        return args.teacher

    try:
        for ref in [r for r in args.checkpoints.split(",") if r.strip()]:
            out["checkpoints"][ref] = measure_checkpoint(ref.strip(), train_zip, pen, progress=bar)
        for name in [c for c in args.candidates.split(",") if c.strip()]:
            build = CANDIDATES.get(name.strip())
            members, sums = [], None
            for k in range(args.members):
                ctx = {"pretrained": pretrained, "teacher": teacher}
                cfg = get_recipe(args.recipe, source=str(train_zip), seed=args.seed + k,
                                 **({"epochs": args.epochs} if args.epochs else {}))
                cfg.data.val_fraction = args.val_fraction
                cfg = build(cfg, ctx)
                if args.strokes is not None and cfg.data.strokes:
                    cfg.data.strokes = args.strokes
                if args.pens is not None and cfg.data.strokes:
                    cfg.data.stroke_pens = tuple(args.pens)
                if args.image_size is not None:
                    cfg.data.image_size = args.image_size
                cfg.validate()  # strokes 0-8, pens a positive (low, high)
                if cfg.data.val_fraction == 0 or args.last_epoch:  # the final fit's protocol: the last epoch is kept
                    cfg.monitor, cfg.mode, cfg.patience = "elapsed_s", "max", 0
                splits = _splits_for(cfg, ctx, bar)
                evalset = splits.val if args.on == "val" else splits.test
                strokes = _stroke_set(evalset, cfg.data, pen, bar)
                t0, c0 = time.perf_counter(), time.process_time()
                res = fit(cfg, root / new_run_id(name), splits=splits, progress=bar)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                classes = res.classes
                p_img = evaluate(res.model, evalset.images, evalset.labels, len(classes), return_probs=True,
                                 side=evalset.side)["probs"]
                p_str = evaluate(res.model, strokes.images, strokes.labels, len(classes), return_probs=True,
                                 side=strokes.side)["probs"]
                members.append({"seed": args.seed + k, "n_train": len(splits.train), "epochs": len(res.history),
                                "train_seconds": round(wall, 1), "train_cpu_seconds": round(cpu, 1),
                                "threads": torch.get_num_threads(), **_both(p_img, p_str, evalset, strokes, classes)})
                sums = (p_img, p_str) if sums is None else (sums[0] + p_img, sums[1] + p_str)
                if res.run_dir is not None:
                    (res.run_dir / "bench.json").write_text(__import__("json").dumps(members[-1], indent=1))
            row = {"description": (build.__doc__ or "").strip(), "members": members}
            if cfg.init_from and cfg.init_from == str(root / "synthetic-charnet.pt"):
                row["pretrain_cpu_seconds"] = round(pretrain_cpu["s"], 1)  # 0 where an earlier candidate's was reused
            if cfg.teacher:
                row.update(teacher=args.teacher, distill_weight=cfg.distill_weight,
                           distill_temperature=cfg.distill_temperature)
            if args.members > 1:
                row["ensemble"] = _both(sums[0] / args.members, sums[1] / args.members, evalset, strokes, classes)
            out["candidates"][name.strip()] = row
    finally:
        bar.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return out
