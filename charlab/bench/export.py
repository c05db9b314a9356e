"""Export: ONNX (onnxruntime) and TorchScript against the torch Predictor on a whole test split.

Exports the model, then on every image of the split (prepared once by charlab, as uint8
N×1×H×W) compares the exported file's probabilities with the torch Predictor's: argmax
agreement and the largest |Δp|. Latency is per image at batch 1, the three runtimes
interleaved image by image (so a busy moment of a shared machine hits all of them alike), with
the same intra-op thread count for torch and onnxruntime; throughput at batch 256 too.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from ..errors import CharlabError

ROOT = Path(__file__).resolve().parents[2]
CHARS74K_TEST = ROOT.parent / "shared" / "data" / "chars74k_hnd" / "testPart1.zip"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", default=str(ROOT / "checkpoints" / "default.pt"),
                   help="run, checkpoint or A+B ensemble (default: checkpoints/default.pt)")
    p.add_argument("--source", default=str(CHARS74K_TEST), help="test data (default: the Chars74K test split)")
    p.add_argument("--latency-images", type=int, default=300, help="images timed at batch 1 (default 300)")
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads for torch and onnxruntime alike (default 1: batch-1 serving on shared cores)")


def run(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from ..data import load_source
    from ..export import FORMATS, compare, export_bytes, exported_side, runner
    from ..predict import load_predictor

    predictor = load_predictor(args.run)
    if not (Path(args.source).exists() or ":" in args.source):
        raise CharlabError(f"test data {args.source} not found; pass --source")
    test = load_source(args.source, predictor.data_config_for(args.source), split="test")
    if test is None:
        test = load_source(args.source, predictor.data_config_for(args.source))
    torch.set_num_threads(max(1, args.threads))
    out: dict = {"model": predictor.name, "images": len(test), "threads": args.threads}
    runners = {}
    for fmt in FORMATS.names():
        t = time.perf_counter()
        data = export_bytes(predictor, fmt)
        out[f"{fmt}_export_s"] = time.perf_counter() - t
        out[f"{fmt}_mb"] = len(data) / 1e6
        if fmt == "onnx":
            from ..export import INPUT_NAME, OUTPUT_NAME, onnx_session

            session = onnx_session(data, threads=args.threads)
            from ..export import SIDE_NAME

            runners[fmt] = lambda x, *side, s=session: s.run([OUTPUT_NAME], {INPUT_NAME: x, **(
                {SIDE_NAME: side[0]} if side else {})})[0]
        else:
            runners[fmt] = runner(fmt, data)
        got = compare(predictor, runners[fmt], test.images, side=test.side)
        out[f"{fmt}_agreement"] = got["agreement"]
        out[f"{fmt}_max_abs_diff"] = got["max_abs_diff"]

    x = test.images.float().div(255.0)  # N×1×H×W
    n = min(max(1, args.latency_images), len(x))
    side = test.side if predictor.side_inputs else None  # float N×G for a side-input model
    side_in = exported_side(predictor, side)  # as the exported graphs take it (the present flag appended)

    def side_of(a: int, b: int) -> tuple:
        return () if side_in is None else (side_in[a:b],)

    timed = {"torch": lambda a, b: predictor.probs(x[a:b], side=side[a:b] if side is not None else None),
             **{f: (lambda a, b, r=r: r(x[a:b].numpy(), *side_of(a, b))) for f, r in runners.items()}}
    for fn in timed.values():  # warm-up: first calls allocate
        for i in range(5):
            fn(i, i + 1)
    lat: dict[str, list[float]] = {k: [] for k in timed}
    for i in range(n):
        for k in (list(timed) if i % 2 == 0 else list(timed)[::-1]):  # one 1×1×H×W image
            t = time.perf_counter()
            timed[k](i, i + 1)
            lat[k].append(time.perf_counter() - t)
    for k, v in lat.items():
        out[f"{k}_batch1_median_ms"] = 1000 * statistics.median(v)
        out[f"{k}_batch1_p90_ms"] = 1000 * float(np.percentile(v, 90))
    for k, fn in timed.items():  # throughput on the whole split at batch 256
        t = time.perf_counter()
        for s in range(0, len(x), 256):
            fn(s, s + 256)
        out[f"{k}_batch256_img_per_s"] = len(x) / (time.perf_counter() - t)
    return out
