"""Data health on ~60,000 images: cold and cached check, chunked near-duplicate search against the all-pairs loop, UMAP against openTSNE.

1. `health.check` cold (embedding, raw pass where there are files, duplicates, leaks, outliers,
   look-alikes, PCA + UMAP map) and then cached (the same call, served from disk).
2. The near-duplicate search (chunked, banded, exact) against the obvious all-pairs loop (one
   row against every later row, numpy) on a sample, in the same run; both must find the same pairs.
3. The map: UMAP (umap-learn, on our exact k-NN graph) against openTSNE (FFT-accelerated t-SNE)
   on the same features: seconds, k-NN preservation (share of each point's 10 nearest
   neighbours in feature space that stay among its 10 nearest on the map, on a sample) and class
   separation (leave-one-out 10-NN accuracy on the map). openTSNE is optional: skipped when not installed.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", default="synthetic:classes=62,n=1000", help="data source (default: 62,000 synthetic)")
    p.add_argument("--embedding", default="pixels", help="model or pixels (default pixels)")
    p.add_argument("--run", default=str(ROOT / "checkpoints" / "default.pt"), help="model for --embedding model")
    p.add_argument("--sample", type=int, default=4000, help="images in the all-pairs comparison")
    p.add_argument("--no-tsne", action="store_true", help="skip the openTSNE comparison")


def _preservation(high: np.ndarray, low: np.ndarray, sample: np.ndarray, k: int = 10) -> float:
    from ..health import knn

    hi, _ = knn(high[sample], k)
    lo, _ = knn(low[sample], k)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(hi, lo)]))


def _separation(low: np.ndarray, labels: np.ndarray, sample: np.ndarray, k: int = 10) -> float:
    from ..health import knn

    idx, _ = knn(low[sample], k)
    lab = labels[sample]
    votes = lab[idx]  # n×k
    pred = np.array([np.bincount(v).argmax() for v in votes])
    return float((pred == lab).mean())


class _Stages:
    """A progress callback that prints each new stage with the time since the start (stderr)."""

    def __init__(self) -> None:
        self.t0, self.last = time.perf_counter(), None

    def __call__(self, done: int = 0, total: int = 0, message: str = "") -> None:
        if message != self.last:
            self.last = message
            print(f"[{time.perf_counter() - self.t0:7.1f} s] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict:
    import torch

    from .. import health
    from ..config import DataConfig
    from ..data import load_splits

    pred = None
    if args.embedding == "model":
        from ..predict import load_predictor

        pred = load_predictor(args.run)
    t = time.perf_counter()
    cfg = DataConfig(source=args.source)
    sp = load_splits(cfg if pred is None else health.prepared_for(cfg, pred))  # as the model sees them, as data health does
    load_s = time.perf_counter() - t
    sets = {"train": sp.train, "val": sp.val, "test": sp.test}
    n = sum(len(v) for v in sets.values() if v is not None)
    out: dict = {"source": args.source, "images": n, "embedding": args.embedding, "threads": torch.get_num_threads(),
                 "data_load_s": round(load_s, 1)}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        log = _Stages()
        rep = health.check(sets, pred, embedding=args.embedding, cache_dir=tmp, progress=log)
        out["check_cold_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        hit = health.check(sets, pred, embedding=args.embedding, cache_dir=tmp)
        out["check_cached_s"] = round(time.perf_counter() - t, 2)
        assert hit.from_cache, "the second check was not served from the cache"
    out.update({f"found_{k}": v for k, v in rep.counts().items() if k != "images"})
    log(message=f"check: {out}")

    images = torch.cat([v.images for v in sets.values() if v is not None])
    thumbs = health.thumbnails(images)
    rng = np.random.default_rng(0)
    s = np.sort(rng.choice(len(thumbs), min(args.sample, len(thumbs)), replace=False))
    t = time.perf_counter()
    i, j, _ = health.near_pairs(thumbs[s], health.NEAR_THRESHOLD)
    chunked = time.perf_counter() - t
    t = time.perf_counter()
    ref = health.near_pairs_bruteforce(thumbs[s], health.NEAR_THRESHOLD)
    loop = time.perf_counter() - t
    same = ref == {(int(a), int(b)) for a, b in zip(i, j)}
    out.update({"pairs_sample": len(s), "pairs_chunked_s": round(chunked, 3), "pairs_loop_s": round(loop, 2),
                "pairs_speedup": round(loop / max(chunked, 1e-9), 1), "pairs_same": same})
    t = time.perf_counter()
    health.near_pairs(thumbs, health.NEAR_THRESHOLD)
    out["pairs_all_s"] = round(time.perf_counter() - t, 1)
    log(message=f"pairs: {out}")

    # the map: both methods on the same standardised, PCA-reduced features
    feats = health.pixel_features(images)[0] if pred is None else np.concatenate(
        [health.model_features(v.images, pred)[0] for v in sets.values() if v is not None])
    red = health.pca(health._standardise(feats), health.PCA_DIMS)
    labels = np.concatenate([v.labels.numpy() for v in sets.values() if v is not None])
    t = time.perf_counter()
    nbr_i, nbr_d = health.knn(red, health.K)
    out["knn_s"] = round(time.perf_counter() - t, 1)
    ev = np.sort(rng.choice(len(red), min(5000, len(red)), replace=False))
    t = time.perf_counter()
    xy = health.map_umap(red, nbr_i, nbr_d)
    out["umap_s"] = round(time.perf_counter() - t, 1)
    out["umap_knn_preserved"] = round(_preservation(red, xy, ev), 3)
    out["umap_class_sep"] = round(_separation(xy, labels, ev), 3)
    out["pca_knn_preserved"] = round(_preservation(red, red[:, :2], ev), 3)
    out["pca_class_sep"] = round(_separation(red[:, :2], labels, ev), 3)
    log(message=f"umap: {out}")
    if not args.no_tsne:
        try:
            from openTSNE import TSNE
        except ImportError:
            out["tsne"] = "openTSNE not installed"
        else:
            t = time.perf_counter()
            xy_t = np.asarray(TSNE(n_jobs=torch.get_num_threads(), random_state=0, verbose=False).fit(red), np.float32)
            out["tsne_s"] = round(time.perf_counter() - t, 1)
            out["tsne_knn_preserved"] = round(_preservation(red, xy_t, ev), 3)
            out["tsne_class_sep"] = round(_separation(xy_t, labels, ev), 3)
    return out
