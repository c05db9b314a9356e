"""Errors page: an interpretation computed cold against one read from charlab's disk cache.

Cold = predict the whole split with an already loaded model (what the first visit of the
Errors page pays); cached = the same `Interpretation.from_run` call again, served from the
.npz in the run directory (or the cache dir) after hashing the checkpoint and the split. Also
times one Grad-CAM and one input-gradient map and the first class example from the training
split, the other work a click on the page triggers, and predicting the split with torch's
default thread count against one thread (on a 2-core machine shared with a training process,
OpenMP threads that wait on each other were found to cost far more than they gain).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from ..errors import CharlabError

ROOT = Path(__file__).resolve().parents[2]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", default=str(ROOT / "checkpoints" / "default.pt"),
                   help="run directory or checkpoint (default: checkpoints/default.pt)")
    p.add_argument("--source", help="data source (default: the one the model was trained on)")
    p.add_argument("--split", default="test", choices=["test", "val", "train"])
    p.add_argument("--repeats", type=int, default=5, help="cached loads timed (median reported)")


def _time(fn) -> tuple[object, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def run(args: argparse.Namespace) -> dict:
    from ..interpret import Interpretation, load_split
    from ..predict import load_predictor

    if not Path(args.run).exists():
        raise CharlabError(f"{args.run} not found; pass --run RUN_DIR_OR_CHECKPOINT")
    pred, load_s = _time(lambda: load_predictor(args.run))
    (ds, _), data_s = _time(lambda: load_split(pred, args.source, args.split))
    with tempfile.TemporaryDirectory() as tmp:
        cold, cold_s = _time(lambda: Interpretation.from_run(args.run, ds, args.split, tmp, predictor=pred))
        cached_times = []
        for _ in range(max(1, args.repeats)):
            hit, s = _time(lambda: Interpretation.from_run(args.run, ds, args.split, tmp, predictor=pred))
            if not hit.from_cache:
                raise CharlabError("the second from_run was not served from the cache")
            cached_times.append(s)
    cached_s = statistics.median(cached_times)
    n_maps = min(20, cold.n)
    cam_ms = statistics.median(_time(lambda: cold.saliency(i, "grad_cam"))[1] for i in range(n_maps)) * 1000
    grad_ms = statistics.median(_time(lambda: cold.saliency(i, "input_gradient"))[1] for i in range(n_maps)) * 1000
    import torch

    threads = torch.get_num_threads()
    split_s = {}
    for n in sorted({threads, 1}):
        torch.set_num_threads(n)
        try:
            pred.probs(ds.images[:64])  # warm-up
            split_s[n] = _time(lambda: pred.probs(ds.images))[1]
        finally:
            torch.set_num_threads(threads)
    train, _ = load_split(pred, args.source, "train")
    _, example_ms = _time(lambda: cold.class_example(int(cold.targets[0]), reference_dataset=train))
    return {
        "model": pred.name,
        "split": args.split,
        "n": cold.n,
        "classes": cold.num_classes,
        "accuracy": round(cold.accuracy(), 4),
        "load_model_s": round(load_s, 3),
        "load_split_s": round(data_s, 3),
        "interpret_cold_s": round(cold_s, 3),
        "interpret_cached_s": round(cached_s, 4),
        "cache_speedup": round(cold_s / cached_s, 1) if cached_s > 0 else None,
        "grad_cam_ms": round(cam_ms, 2),
        "input_gradient_ms": round(grad_ms, 2),
        "class_example_first_ms": round(example_ms * 1000, 2),
        **{f"predict_split_s_{n}_threads": round(v, 3) for n, v in split_s.items()},
    }
