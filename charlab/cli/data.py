"""`python -m charlab data info|grid|health`: look at a data source from the shell.

    python -m charlab data info --source ../shared/data/chars74k_hnd/trainPart1.zip --json
    python -m charlab data info --source synthetic
    python -m charlab data grid --source mnist:~/data --out grid.png
    python -m charlab data health --source ../shared/data/chars74k_hnd/trainPart1.zip --json
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

import numpy as np

from ..config import DataConfig
from .labels import add_option as add_labels_option
from ._progress import TqdmProgress


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect a data source (class table, skipped files, sample grid)")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    info = dsub.add_parser("info", help="class table and summary of a source",
                           description="Load a source (cached after the first time) and print its classes, counts, "
                                       "imbalance, split sizes and skipped files.")
    _common(info)
    info.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    info.add_argument("--threshold", type=int, default=None, help="list the classes with fewer images than this")
    info.add_argument("--no-splits", action="store_true", help="skip loading the test split and sizing train/val/test")
    info.set_defaults(func=cmd_info)

    grid = dsub.add_parser("grid", help="save a PNG of preprocessed samples, one row per class")
    _common(grid)
    grid.add_argument("--out", required=True, help="PNG file to write")
    grid.add_argument("--per-class", type=int, default=8, help="samples per class row (default 8)")
    grid.add_argument("--scale", type=int, default=3, help="pixel magnification of the PNG (default 3)")
    grid.add_argument("--split", choices=("train", "test"), default="train", help="which split to draw from")
    grid.set_defaults(func=cmd_grid)

    health = dsub.add_parser("health", help="duplicates, train/test leaks, outliers and look-alike classes",
                             description="Embed every image (a model's penultimate features, or pixels), then find exact "
                                         "and near duplicates, test images with a copy in train, blank / inverted / far "
                                         "outliers and classes that overlap. Cached after the first time.")
    _common(health)
    health.add_argument("--run", default=None, help="run directory or checkpoint whose features embed the images "
                                                    "(default: checkpoints/default.pt; its preprocessing is used)")
    # no choices= here: importing charlab.health (torch) would slow every command's start-up;
    # charlab.health's registries refuse an unknown name with the valid ones
    health.add_argument("--embedding", default="model", help="model (its penultimate features) or pixels")
    health.add_argument("--map", default="umap", dest="method", help="2-D map besides PCA: umap or pca")
    health.add_argument("--near-threshold", type=float, default=None,
                        help="RMS difference (0..1) of 32×32 thumbnails for a near-copy (default: charlab.health's, 0.02)")
    health.add_argument("--json", action="store_true", help="print one JSON object")
    health.add_argument("--limit", type=int, default=10, help="rows listed per check in the text output")
    health.set_defaults(func=cmd_health)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", required=True, help="synthetic[:opts], a folder/.zip/.csv path, mnist:DIR, emnist:DIR[:split]")
    add_labels_option(p)
    p.add_argument("--test-source", default=None, help="explicit test source (default: the source's own test split)")
    p.add_argument("--image-size", type=int, default=DataConfig.image_size, help="S: images are S×S (default 28)")
    p.add_argument("--seed", type=int, default=DataConfig.seed, help="split / generation seed (default 0)")


def _config(args: argparse.Namespace) -> DataConfig:
    from ..data.sources import check_test_source, resolve
    from ..labels import resolve as resolve_labels

    cfg = DataConfig(source=args.source, test_source=args.test_source, image_size=args.image_size, seed=args.seed,
                     labels=resolve_labels(args.labels, args.source))
    cfg.validate()
    resolve(cfg.source)  # an empty or missing source is refused before anything loads
    check_test_source(cfg.source, cfg.test_source)
    return cfg


def info_dict(cfg: DataConfig, threshold: int | None = None, splits: bool = True, progress=None) -> dict:
    """Everything `data info` prints, as one JSON-able dict."""
    from ..data import class_stats, load_source, load_splits

    from ..labels import apply as apply_labels

    ds, labels = apply_labels(load_source(cfg.source, cfg, split="train", progress=progress), cfg.labels)
    counts = ds.counts()
    stats = class_stats(counts, ds.classes, threshold=threshold)
    out = {
        "source": cfg.source,
        "image_size": cfg.image_size,
        "classes": list(ds.classes),
        "counts": [int(c) for c in counts],
        "n_images": len(ds),
        "n_classes": ds.num_classes,
        **{k: v for k, v in stats.to_dict().items() if k not in ("n_images", "n_classes")},
        "skipped": list(ds.skipped),
        "n_skipped": len(ds.skipped),
        "labels": labels.to_dict() if cfg.labels else None,  # overridden / excluded / stale counts
    }
    if splits:
        sp = load_splits(cfg, progress=progress)
        out["splits"] = {"train": len(sp.train), "val": len(sp.val), "test": len(sp.test) if sp.test is not None else None}
        out["notes"] = sp.notes
    return out


def cmd_info(args: argparse.Namespace) -> int:
    cfg = _config(args)
    with TqdmProgress(stream=sys.stderr, unit="img", per_message=True) as progress:
        out = info_dict(cfg, threshold=args.threshold, splits=not args.no_splits, progress=progress)
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    ratio = out["imbalance_ratio"]
    print(f"source   {out['source']}")
    print(f"images   {out['n_images']} in {out['n_classes']} classes, {cfg.image_size}×{cfg.image_size}")
    print(f"per class min {out['min']}, median {out['median']:g}, max {out['max']}, "
          f"imbalance {'inf' if ratio is None else f'{ratio:.2f}'} (max/min)")
    if out["labels"]:
        lb = out["labels"]
        print(f"labels   {lb['overridden']} overridden, {lb['excluded']} excluded ({lb['file']})"
              + (f", {lb['n_stale']} NOT applied (image gone or changed)" if lb["n_stale"] else ""))
    if "splits" in out:
        s = out["splits"]
        print(f"splits   train {s['train']}, val {s['val']}, test {s['test'] if s['test'] is not None else 'none'}")
        for note in out["notes"]:
            print(f"  - {note}")
    if args.threshold is not None:
        print(f"below {args.threshold}: {', '.join(out['below_threshold']) or 'none'}")
    print()
    top = max(out["counts"], default=1) or 1
    print(f"{'class':<10} {'count':>6} {'share':>6}")
    for name, n in zip(out["classes"], out["counts"]):
        print(f"{name:<10} {n:>6} {n / max(out['n_images'], 1):>6.1%} {'#' * int(round(30 * n / top))}")
    if out["skipped"]:
        print(f"\nskipped {len(out['skipped'])} files:")
        for reason, n in Counter(s["reason"] for s in out["skipped"]).most_common():
            print(f"  {n:>6}  {reason}")
        for s in out["skipped"][:10]:
            print(f"  {s['path']}: {s['reason']}")
        if len(out["skipped"]) > 10:
            print(f"  ... and {len(out['skipped']) - 10} more (--json lists all)")
    return 0


def cmd_grid(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..data import load_source, sample_grid
    from ..errors import CharlabError
    from ..io import atomic_write

    cfg = _config(args)
    with TqdmProgress(stream=sys.stderr, unit="img", per_message=True) as progress:
        ds = load_source(cfg.source, cfg, split=args.split, progress=progress)
    if ds is None:
        raise CharlabError(f"{cfg.source} has no test split")
    grid = sample_grid(ds, per_class=args.per_class, seed=cfg.seed)
    img = Image.fromarray(grid)
    if args.scale > 1:
        img = img.resize((img.width * args.scale, img.height * args.scale), Image.Resampling.NEAREST)
    atomic_write(args.out, lambda f: img.save(f, format="PNG"))
    print(f"wrote {args.out}: {ds.num_classes} classes × {args.per_class} samples ({int(np.sum(ds.counts()))} images)")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..data import load_splits
    from ..health import NEAR_THRESHOLD, check, prepared_for
    from ..predict import load_predictor

    predictor = None
    if args.embedding == "model":
        ref = args.run or str(Path(__file__).resolve().parents[2] / "checkpoints" / "default.pt")
        if args.run or Path(ref).exists():
            predictor = load_predictor(ref)
    cfg = _config(args)
    if predictor is not None:
        cfg = prepared_for(cfg, predictor)
    with TqdmProgress(stream=sys.stderr, unit="img", per_message=True) as progress:
        splits = load_splits(cfg, progress=progress)
        report = check({"train": splits.train, "val": splits.val, "test": splits.test}, predictor,
                       embedding=args.embedding, method=args.method, near_threshold=args.near_threshold if args.near_threshold is not None else NEAR_THRESHOLD,
                       seed=cfg.seed, progress=progress)
    if args.json:
        print(json.dumps({"source": cfg.source, **report.to_dict()}, indent=2, ensure_ascii=False))
        return 0
    m = report.meta
    print(f"source     {cfg.source} ({report.n} images: "
          + ", ".join(f"{s} {int((report.table['split'] == s).sum())}" for s in m["splits"]) + ")")
    print(f"embedding  {m['embedding']}{' of ' + m['model'] if m.get('model') else ''}, map {m['method']}"
          f"{' (cached)' if report.from_cache else ''}")
    for note in m["notes"]:
        print(f"  - {note}")
    for line in report.summary_lines():
        print(line)
    n = args.limit
    if len(report.leaks):
        print(f"\nleaks (test -> train, distance):")
        for r in report.leaks.head(n).itertuples():
            print(f"  {r.test}  ->  {r.train}  {r.distance:.3f}")
    if report.duplicates:
        print("\nduplicate groups:")
        for g in report.duplicates[:n]:
            print(f"  {g['kind']:<5} {'+'.join(g['splits']):<15} " + ", ".join(g["paths"][:4])
                  + (f" (+{len(g['paths']) - 4})" if len(g["paths"]) > 4 else ""))
    if len(report.outliers):
        print("\noutliers (kind, score):")
        for kind, rows in report.outliers.groupby("kind"):
            for r in rows.head(n).itertuples():
                print(f"  {kind:<8} {r.score:7.3f}  {r.path}")
    return 0
