"""Data health: embeddings, a 2-D map, duplicates, train/test leaks, outliers and look-alike classes.

Arrays and DataFrames only: the Dataset page and `charlab data health` draw and print them.

    report = check({"train": splits.train, "val": splits.val, "test": splits.test}, predictor)
    report.table        # one row per image: split, index, path, label, map coordinates, flag
    report.leaks        # test image, its near-copy in train/val, distance
    report.duplicates   # [{"paths", "kind": "exact"|"near", "splits"}]
    report.outliers     # path, kind (blank | inverted | far), score
    report.overlap      # class pairs that mix in embedding space; report.lookalikes: the groups

How each check decides, and why:
- exact duplicates: the same content hash (`CharDataset.hashes`: a file's bytes) in two places.
- near duplicates: preprocessing crops every image to its ink and centres it, so a resized or
  shifted copy becomes almost the same image. At 28 px, though, any two straight strokes (I, l, 1
  of different writers) are the same image too; so where the source has files they are read once
  more at 64 px (`raw_stats`, which also reads polarity), where stroke width and wobble still
  tell writers apart. Images are compared as 32×32 area-averaged thumbnails (a re-encoding's
  noise averages out) by RMS difference in [0, 1]; pairs at or below `NEAR_THRESHOLD` are
  near-copies (measured on Chars74K: planted resized / shifted / JPEG copies <= 0.017, the
  closest different writings of I/l/1 >= 0.017, 1% of them below 0.022). The search is exact
  but never holds an N×N matrix: it scans row chunks against a 32-D PCA projection (a
  projection only shrinks distances, so every pair below the threshold is a candidate), then
  confirms the candidates at full resolution.
- leaks: a test image with an exact or near copy among the training (train + validation) images.
- blank: an image with no ink after preprocessing, or whose raw file has under
  `BLANK_SHARE` of the set's median ink coverage (cropping would blow a speck up to full size).
- inverted: preprocessing flips every image to bright ink (`invert="auto"`, from the border's
  median), so inversion is only visible in the raw files; each file's paper level against its
  ink is read once (`raw_stats`) and images whose polarity is the minority (under
  `INVERTED_MAX_SHARE` of the set) are flagged.
- far: `far_scores`, the distance to the nearest class (its nearest members and its centroid)
  in units of the typical in-class distance; above `FAR_FACTOR` the image is far from every
  class. A group of near-copies made only of outliers (four noise images) is left to the outliers.
- look-alike classes: the share of k-nearest-neighbour links between two classes (both ways),
  over all the links of the two; pairs above `OVERLAP_MIN` are joined into groups.

Results are cached on disk per (model fingerprint, data fingerprint, options), like
`charlab.interpret`'s, so a second visit is instant and a retrained model or changed data misses.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd
import torch

from .errors import CharlabError, DataError
from .io import atomic_write_bytes
from .registry import Registry

Progress = Callable[[int, int, str], None]

CACHE_VERSION = 5  # bump when a cached report or embedding changes meaning (5: a side model's image features only)
THUMB = 32  # side of the thumbnails compared for near-duplicates
NEAR_THRESHOLD = 0.02  # RMS thumbnail difference (0..1) at or below which two images are near-copies
BLANK_SHARE = 0.05  # raw ink coverage below this share of the set's median: near-empty
INVERTED_MAX_SHARE = 0.25  # a polarity this rare in the set is "inverted against the rest"
POLARITY_MARGIN = 0.04  # |paper - mid-range| / 255 below this: too faint to call a polarity
K = 10  # neighbours for the far-outlier score and the class overlap
FAR_FACTOR = 2.6  # far_scores() above which an image is far from every class (1 = typical; see far_scores):
# with the shipped default.pt (its three members' features side by side) 0.6-0.9% of the clean Chars74K
# train and test zips, and 11 of 12 planted other-alphabet / noise images (re-checked on each new default)
OVERLAP_MIN = 0.12  # share of k-NN links two classes exchange above which they look alike
PCA_DIMS = 32  # embeddings are reduced to this before neighbour search (speed; distances kept ~exact)
CHUNK_CELLS = 32_000_000  # floats in one chunk's distance block (128 MB): bounds memory at any N
FLAGS = ("ok", "duplicate", "leak", "blank", "inverted", "far")  # report.table["flag"], worst last wins
MAP_POINTS = 15_000  # points a map draws and ships hover thumbnails of (map_sample)

EMBEDDINGS: Registry = Registry("embedding", ordered=True)
MAPS: Registry = Registry("map method", ordered=True)


# ---------------------------------------------------------------------------------- embeddings

def prepared_for(cfg, predictor):
    """`cfg` (a DataConfig) with `predictor`'s own preprocessing (its image size, crop, inversion,
    threshold, side inputs), the source, labels and split kept: the model embedding must read the
    images as the model was trained to see them (the shipped default takes 32×32 where the app's
    sidebar defaults to 28), so callers load the data with this config rather than letting check()
    fall back to pixels. Not its training extras (stroke redrawings, its val fraction): those
    would add or move images."""
    from dataclasses import replace

    theirs = predictor.data_config
    # side_dropout too: it says the model also reads images without a page (synthetic glyphs, CSV
    # rows), so a page-less source loads, its side vectors absent, instead of being refused
    return replace(cfg, **theirs.preprocessing(), side_dropout=theirs.side_dropout)


@EMBEDDINGS.register("model")
def model_features(images: torch.Tensor, predictor, progress: Optional[Progress] = None,
                   batch_size: int = 512, side: Optional[torch.Tensor] = None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 N×1×H×W (+ N×G side vectors for a model that reads them) -> (N×F penultimate
    image features, N×C probabilities).

    The features are the input of `model.head` (every charlab model ends in one Linear head),
    caught with a forward hook on the copies `predictor.probs` runs, so any architecture in the
    zoo works without a special case. An ensemble's members are side by side (F = the sum of
    theirs): seeds of one recipe embed an odd image differently (on the shipped default's three,
    one member alone found 7 of 12 planted aliens where another found 12), and together they vary
    less. A side-input model's head input ends in the side MLP's output; that part is cut off: it
    says where the ink sat on its page, not what it looks like, and "far from its class" and
    "near-duplicate" are about the look."""
    from .cpu import bulk_threads
    from .models import side_dim
    from .models._layers import SIDE_FEATURES

    if predictor is None:
        raise CharlabError("the model embedding needs a model; choose one, or use the pixel embedding")
    predictor.check_shape(tuple(images.shape[-2:]))
    models = predictor.bulk_models()
    heads = [getattr(m, "head", None) for m in models]
    if not all(isinstance(h, torch.nn.Linear) for h in heads):
        bad = next(m for m, h in zip(models, heads) if not isinstance(h, torch.nn.Linear))
        raise CharlabError(f"{type(bad).__name__} has no Linear head to read features from; use the pixel embedding")
    dims = [h.in_features - (SIDE_FEATURES if side_dim(m) else 0) for m, h in zip(models, heads)]  # image part
    feats: list[list[torch.Tensor]] = [[] for _ in models]
    me = threading.get_ident()

    def keeper(k: int):
        def keep(mod, inp, out):  # the app shares the model between sessions: keep this thread's batches only
            if threading.get_ident() == me:
                feats[k].append(inp[0].detach().float().cpu()[:, :dims[k]])  # B×F_k
        return keep

    hooks = [h.register_forward_hook(keeper(k)) for k, h in enumerate(heads)]
    n = len(images)
    probs = np.empty((n, predictor.num_classes), np.float32)
    try:
        with bulk_threads(n):  # the batches below are each bulk work too: one change for the whole pass
            for a in range(0, n, batch_size):
                probs[a:a + batch_size] = predictor.probs(images[a:a + batch_size], batch_size=batch_size,
                                                          side=None if side is None else side[a:a + batch_size])
                if progress:
                    progress(min(a + batch_size, n), n, "embedding with the model")
    finally:
        for hook in hooks:
            hook.remove()
    parts = [torch.cat(f) if f else torch.zeros(0, d) for f, d in zip(feats, dims)]  # each N×F_k
    return torch.cat([x.reshape(n, -1) for x in parts], dim=1).numpy(), probs  # N×ΣF_k


@EMBEDDINGS.register("pixels")
def pixel_features(images: torch.Tensor, predictor=None, progress: Optional[Progress] = None) -> tuple[np.ndarray, None]:
    """uint8 N×1×H×W -> N×(16·16·aspect) thumbnails in [0, 1]: the model-free embedding."""
    return thumbnails(images), None


def thumbnails(images: torch.Tensor) -> np.ndarray:
    """uint8 N×1×H×W -> float32 N×D area-averaged 16-row thumbnails, scaled by 1/sqrt(D) so that
    the Euclidean distance of two rows is their RMS pixel difference in [0, 1]."""
    h, w = images.shape[-2:]
    tw = max(1, round(THUMB * w / h))
    out = []
    for a in range(0, len(images), 4096):
        x = images[a:a + 4096].float().div_(255.0)
        out.append(torch.nn.functional.adaptive_avg_pool2d(x, (THUMB, tw)).reshape(len(x), -1))  # B×D
    x = torch.cat(out) if out else torch.zeros(0, THUMB * tw)
    return (x / np.sqrt(x.shape[1])).numpy()


def embed(dataset, predictor=None, kind: str = "model", cache_dir: str | os.PathLike | None = None,
          progress: Optional[Progress] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """A CharDataset -> (N×F embedding, N×C probabilities or None), cached on disk per
    (model fingerprint, dataset fingerprint) as interpretations are."""
    from .interpret import dataset_fingerprint

    fn = EMBEDDINGS.get(kind)
    if kind == "pixels":
        return fn(dataset.images, None, progress)
    key = _key("embed", CACHE_VERSION, kind, predictor.fingerprint() if predictor is not None else "", dataset_fingerprint(dataset))
    path = _cache_folder(cache_dir) / f"embed-{key}.npz"
    hit = _read_npz(path)
    if hit is not None and predictor is not None and predictor.paths:
        return hit["x"], hit["probs"]
    x, probs = fn(dataset.images, predictor, progress, side=getattr(dataset, "side", None))
    if predictor is not None and predictor.paths:  # an in-memory model has no file to key a cache on
        _write_npz(path, x=x, probs=probs)
    return x, probs


# ---------------------------------------------------------------------------------- neighbours

def _chunk_rows(n_cols: int) -> int:
    return int(max(16, min(4096, CHUNK_CELLS // max(n_cols, 1))))


def pca(x: np.ndarray, dims: int, seed: int = 0) -> np.ndarray:
    """N×D -> N×min(dims, D) centred principal components. The basis comes from the D×D covariance
    of at most 5,000 rows (one matmul and an eigh: far cheaper than a low-rank SVD's QR steps;
    the neighbour searches need an orthonormal basis, not the best one)."""
    n, d = x.shape
    dims = max(1, min(dims, d, n))
    t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    mean = t.mean(0, keepdim=True)
    g = torch.Generator().manual_seed(seed)
    sample = (t[torch.randperm(n, generator=g)[:5000]] if n > 5000 else t) - mean
    cov = (sample.T @ sample).double()  # D×D
    _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
    v = vecs[:, -dims:].flip(1).float()  # D×dims, orthonormal, largest first
    v = v * torch.where(v.sum(0) < 0, -1.0, 1.0)  # a fixed sign, so maps do not flip between runs
    return ((t - mean) @ v).numpy()


def knn(x: np.ndarray, k: int, progress: Optional[Progress] = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours (Euclidean, self excluded) in row chunks: (N×k index, N×k distance)."""
    n = len(x)
    k = max(0, min(k, n - 1))
    idx = np.zeros((n, k), np.int64)
    dist = np.zeros((n, k), np.float32)
    if k == 0:
        return idx, dist
    t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    sq = (t * t).sum(1)  # N
    tt = t.T.contiguous()
    step = _chunk_rows(n)
    for a in range(0, n, step):
        b = min(a + step, n)
        # |c|^2 - 2 r.c in one fused pass; |r|^2 is constant along a row, so topk does not need it
        d = torch.addmm(sq[None, :], t[a:b], tt, alpha=-2.0)  # B×N, the only block held
        d[torch.arange(b - a), torch.arange(a, b)] = float("inf")
        v, i = torch.topk(d, k, dim=1, largest=False)
        idx[a:b], dist[a:b] = i.numpy(), (v + sq[a:b, None]).clamp_min_(0).sqrt_().numpy()
        if progress:
            progress(b, n, "finding neighbours")
    return idx, dist


def far_scores(x: np.ndarray, labels: np.ndarray, m: int = 5, progress: Optional[Progress] = None,
               k: int = 0) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How far each row is from EVERY class, in units of the typical in-class distance.

    Two measures, geometric mean: (a) the mean distance to the m nearest images of a class (self
    excluded), over that class's typical figure for its own members shrunk toward the set's,
    smallest over the classes; (b) the distance
    to the nearest class centroid in units of that class's median member distance. (a) alone
    misses a clump of junk (four noise images are each other's neighbours, yet no class's), (b)
    alone misses classes with two shapes; junk is far by both. Chunked like `knn`.

    With k > 0 it also returns the k nearest neighbours (index, distance) from the same pass: the
    global k nearest are among each class's k nearest, so one scan of the distances serves both."""
    n = len(x)
    classes = np.unique(labels)
    if n < 3 or len(classes) == 0 or k >= n:
        far = np.zeros(n, np.float32)
        return (far, *knn(x, k)) if k else far
    t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], classes), np.searchsorted(labels[order], classes, side="right")
    # Columns grouped by class into G pieces of P slots each (padding at +inf), so that ONE topk over
    # a B×G×P view finds every class's nearest: C topk calls on strided column slices cost 2-3× more.
    # A class bigger than P spans several pieces, whose candidates are merged, so padding stays
    # bounded however unequal the classes are.
    kk = max(m, k)
    size = _piece_size(bounds[1] - bounds[0], kk)  # P
    piece_class, slot = _class_pieces(bounds, size)  # G; padded slot of each label-sorted column
    n_pieces = len(piece_class)
    cols = torch.zeros(n_pieces * size, t.shape[1])
    cols[slot] = t[order]
    sq = torch.full((n_pieces * size,), float("inf"))
    sq[slot] = (t[order] * t[order]).sum(1)
    row_of_slot = torch.full((n_pieces * size,), -1, dtype=torch.int64)
    row_of_slot[slot] = torch.as_tensor(order)
    slot_of_row = np.empty(n, np.int64)
    slot_of_row[order] = slot
    first_piece = np.searchsorted(piece_class, np.arange(len(classes)))  # C
    split = [(c, np.flatnonzero(piece_class == c)) for c in np.flatnonzero(np.bincount(piece_class) > 1)]
    piece_base = (torch.arange(n_pieces) * size)[None, :, None]  # 1×G×1
    near = np.full((n, len(classes)), np.inf, np.float32)  # n×C mean distance to the m nearest of each class
    nbr_idx, nbr_dist = np.zeros((n, k), np.int64), np.zeros((n, k), np.float32)
    step = _chunk_rows(n_pieces * size)
    for a in range(0, n, step):
        b = min(a + step, n)
        r = t[a:b]
        # squared distance less |r|^2 (constant along a row, so it cannot change a ranking): the
        # add, clamp and sqrt then run on the few picked values, not on the whole block
        d = torch.addmm(sq[None, :], r, cols.T, alpha=-2.0)  # B×(G·P)
        d[torch.arange(b - a), torch.as_tensor(slot_of_row[a:b])] = float("inf")  # not itself
        v, i = torch.topk(d.view(b - a, n_pieces, size), kk, dim=2, largest=False)  # B×G×kk, ascending
        v = v.add_((r * r).sum(1)[:, None, None]).clamp_min_(0).sqrt_()
        vm = v[:, first_piece, :m].clone()  # B×C×m
        for c, pieces in split:
            vm[:, c] = torch.topk(v[:, pieces].reshape(b - a, -1), m, dim=1, largest=False)[0]
        near[a:b] = torch.where(torch.isinf(vm), torch.nan, vm).nanmean(2).numpy()
        if k:  # the global k nearest are among every piece's kk nearest
            dv, j = torch.topk(v.reshape(b - a, -1), k, dim=1, largest=False)  # B×k of B×(G·kk)
            nbr_dist[a:b] = dv.numpy()
            nbr_idx[a:b] = row_of_slot[torch.gather((i + piece_base).reshape(b - a, -1), 1, j)].numpy()
        if progress:
            progress(b, n, "measuring distances to every class")
    near = np.nan_to_num(near, nan=np.inf)
    real = classes >= 0  # labels < 0 (blanks) are neighbours, never a class to be near
    member = labels >= 0
    if not real.any():
        far = np.zeros(n, np.float32)
        return (far, nbr_idx, nbr_dist) if k else far
    cidx = np.searchsorted(classes, labels)
    own = near[np.arange(n), cidx]  # n: to the m nearest of its own class
    finite = member & np.isfinite(own)
    g = float(np.median(own[finite])) if finite.any() else 0.0
    # each class's own scale, shrunk halfway (geometrically) toward the set's: a class written in
    # two ways (cursive and print s) may spread more, yet a small class's noisy median does not
    # decide alone. Measured on Chars74K with default.pt: the set-wide scale flagged 4.3% of the
    # clean images above 1.85 and could not tell other alphabets from unusual writing as well.
    med_c = np.array([np.median(own[finite & (labels == c)]) if (finite & (labels == c)).any() else g
                      for c in classes[real]])
    scale = np.sqrt(np.where(np.isfinite(med_c) & (med_c > 0), med_c, g) * g)  # C
    knn_part = (near[:, real] / np.maximum(scale, 1e-12)[None]).min(1) if g > 0 else np.zeros(n)
    mu = np.stack([x[labels == c].mean(0) for c in classes[real]])  # C×F
    dist = np.linalg.norm(x[:, None, :] - mu[None], axis=2) if n * len(mu) < 4_000_000 else \
        np.stack([np.linalg.norm(x - mu_c, axis=1) for mu_c in mu], 1)  # n×C
    spread = np.array([np.median(dist[labels == c, i]) for i, c in enumerate(classes[real])])
    cen_part = (dist / np.maximum(spread, 1e-12)[None]).min(1)
    far = np.sqrt(np.nan_to_num(knn_part, posinf=0.0) * cen_part).astype(np.float32)
    return (far, nbr_idx, nbr_dist) if k else far


def _piece_size(sizes: np.ndarray, least: int) -> int:
    """The largest class size P (fewest pieces to merge) whose padded block stays within 1.3× the
    columns; the mean class size always does (at most 2×)."""
    n = int(sizes.sum())
    for p in sorted({int(s) for s in sizes if s >= least}, reverse=True):
        if int(np.ceil(sizes / p).sum()) * p <= 1.3 * n:
            return p
    return int(max(least, -(-n // len(sizes))))


def _class_pieces(bounds, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Class ranges [lo, hi) of label-sorted columns -> (the class of each piece of at most `size`
    columns, G; the padded slot piece·size + offset of each sorted column, N)."""
    piece_class, slot = [], []
    for c, (lo, hi) in enumerate(zip(*bounds)):
        for start in range(lo, hi, size):
            slot.append(len(piece_class) * size + np.arange(min(size, hi - start)))
            piece_class.append(c)
    return np.array(piece_class, np.int64), np.concatenate(slot)


def near_pairs(x: np.ndarray, threshold: float, y: Optional[np.ndarray] = None,
               progress: Optional[Progress] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs within `threshold` (Euclidean): (i, j, distance) with i < j inside `x`, or
    i in x, j in y between two sets. Chunked: a B×M block at a time, never N×N.

    Candidates come from a PCA projection, whose distances never exceed the true ones, so no
    pair is missed; each candidate is then measured at full dimension. Rows are sorted by the
    first component, and a chunk is only compared with the columns whose first component lies
    within `threshold` of its own (|p1 difference| <= distance): a band, not all N columns."""
    e = np.zeros(0, np.int64)
    if len(x) == 0 or (y is not None and len(y) == 0):
        return e, e, np.zeros(0, np.float32)
    both = x if y is None else np.concatenate([x, y])
    full = torch.from_numpy(np.ascontiguousarray(both, np.float32))
    proj = torch.from_numpy(np.ascontiguousarray(pca(both, PCA_DIMS), np.float32))
    nx = len(x)
    row_id = torch.argsort(proj[:nx, 0])
    col_id = row_id if y is None else nx + torch.argsort(proj[nx:, 0])
    rows_p, cols_p = proj[row_id], proj[col_id]  # sorted by the first component
    key = cols_p[:, 0].contiguous()
    sq_c = (cols_p * cols_p).sum(1)
    out_i, out_j, out_d = [], [], []
    step = min(1024, _chunk_rows(len(cols_p)))  # short chunks keep the bands narrow
    t2 = threshold * threshold
    for a in range(0, nx, step):
        b = min(a + step, nx)
        r = rows_p[a:b]
        lo = int(torch.searchsorted(key, r[0, 0] - threshold))
        hi = int(torch.searchsorted(key, r[-1, 0] + threshold, right=True))
        if y is None:
            lo = max(lo, a)  # the upper triangle: pairs with a later row come up in that row's chunk
        if hi <= lo:
            continue
        c = cols_p[lo:hi]
        d = torch.addmm(sq_c[None, lo:hi], r, c.T, alpha=-2.0)  # B×band: |c|^2 - 2 r.c
        ci, cj = torch.nonzero(d <= (t2 + 1e-6) - (r * r).sum(1)[:, None], as_tuple=True)
        ci, cj = ci + a, cj + lo
        if y is None:
            keep = cj > ci
            ci, cj = ci[keep], cj[keep]
        if len(ci):
            gi, gj = row_id[ci], col_id[cj]
            dist = (full[gi] - full[gj]).pow_(2).sum(1).sqrt_()  # exact, candidates only
            ok = dist <= threshold
            gi, gj = gi[ok], gj[ok] - (0 if y is None else nx)
            if y is None:
                gi, gj = torch.minimum(gi, gj), torch.maximum(gi, gj)
            out_i.append(gi.numpy())
            out_j.append(gj.numpy())
            out_d.append(dist[ok].numpy())
        if progress:
            progress(b, nx, "searching near-duplicates")
    if not out_i:
        return e, e, np.zeros(0, np.float32)
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_d)


def near_pairs_bruteforce(x: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    """The obvious all-pairs loop (one row against all later rows): the benchmark's and tests' reference."""
    out = set()
    for i in range(len(x)):
        d = np.sqrt(((x[i + 1:] - x[i]) ** 2).sum(1))
        out.update((i, i + 1 + int(j)) for j in np.flatnonzero(d <= threshold))
    return out


class _UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n)

    def find(self, a: int) -> int:
        p = self.parent
        while p[a] != a:
            p[a] = p[p[a]]
            a = p[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self, members) -> list[list[int]]:
        by: dict[int, list[int]] = {}
        for m in np.unique(np.asarray(members, np.int64)):
            by.setdefault(self.find(int(m)), []).append(int(m))
        return [sorted(g) for g in by.values() if len(g) > 1]


# ---------------------------------------------------------------------------------- maps

@MAPS.register("pca")
def map_pca(x: np.ndarray, knn_idx=None, knn_dist=None, seed: int = 0, progress=None) -> np.ndarray:
    """N×F -> N×2: the first two principal components (instant, linear, global shape)."""
    if len(x) < 2:
        return np.zeros((len(x), 2), np.float32)
    p = pca(x, 2, seed)
    return np.pad(p, ((0, 0), (0, 2 - p.shape[1]))).astype(np.float32)


@MAPS.register("umap")
def map_umap(x: np.ndarray, knn_idx=None, knn_dist=None, seed: int = 0, progress=None) -> np.ndarray:
    """N×F -> N×2 UMAP, reusing our exact k-NN graph (so pynndescent never runs).

    Chosen over openTSNE by measurement on 60,000 images (BENCHMARKS.md, "Data health")."""
    n = len(x)
    if n < 16 or knn_idx is None or knn_idx.shape[1] < 2:  # UMAP needs a neighbourhood; tiny sets get PCA
        return map_pca(x, seed=seed)
    import warnings

    os.environ.setdefault("NUMBA_CACHE_DIR", str(_cache_folder(None) / "numba"))  # JIT once per machine
    import umap

    # UMAP's graph includes each point as its own first neighbour, at distance 0
    idx = np.concatenate([np.arange(n)[:, None], knn_idx], axis=1)
    dist = np.concatenate([np.zeros((n, 1), np.float32), knn_dist], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_jobs vs random_state, precomputed-knn notices
        reducer = umap.UMAP(n_neighbors=idx.shape[1], n_components=2, random_state=seed, n_epochs=200 if n <= 10000 else 120,
                            precomputed_knn=(idx, dist, None), init="pca" if n > 2 * idx.shape[1] else "random",
                            low_memory=True, n_jobs=1)
        return reducer.fit_transform(x).astype(np.float32)


def map_sample(flag: np.ndarray, max_points: int = MAP_POINTS, seed: int = 0) -> np.ndarray:
    """N flags -> N bools, the points a map draws: all of them up to `max_points`; beyond that
    every flagged image (what people look for), then a uniform random sample of the rest. A
    browser draws and hovers 15,000 points smoothly; 60,000 strain it, and hover thumbnails of
    every point would make a ~20 MB page."""
    n = len(flag)
    keep = np.ones(n, bool)
    if n <= max_points:
        return keep
    keep[:] = False
    flagged = np.flatnonzero(np.asarray(flag) != "ok")
    rng = np.random.default_rng(seed)
    if len(flagged) >= max_points:
        keep[rng.choice(flagged, max_points, replace=False)] = True
        return keep
    keep[flagged] = True
    keep[rng.choice(np.flatnonzero(~keep), max_points - len(flagged), replace=False)] = True
    return keep


# ---------------------------------------------------------------------------------- raw pass

RAW_SIZE = 64  # near-duplicates compare the raw files preprocessed at this size: finer than 28 px


def _raw_chunk(job: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Worker: per file [(paper level - mid-range) / 255 (> 0: light paper), ink coverage] and a
    THUMB×THUMB uint8 thumbnail of the file preprocessed at RAW_SIZE."""
    from .config import DataConfig
    from .data.preprocess import orient, preprocess_ink, reduce_large, to_gray
    from .data.sources import Originals

    paths, = job
    cfg = DataConfig(image_size=RAW_SIZE)
    stats = np.full((len(paths), 2), np.nan, np.float32)
    thumbs = np.zeros((len(paths), THUMB, THUMB), np.uint8)
    f = RAW_SIZE // THUMB
    with Originals() as files:
        for i, p in enumerate(paths):
            try:
                # reduce_large at RAW_SIZE keeps a 1200×900 scan whole: reducing it further made a resized
                # copy and its original pass through different box filters (measured: recall 0.79)
                gray, ink_bright = to_gray(reduce_large(files.open(p), RAW_SIZE), cfg)
                border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
                level, lo, hi = float(np.median(border)), float(gray.min()), float(gray.max())
                ink = orient(gray, cfg, ink_bright=ink_bright)
                stats[i] = (-0.5 if ink_bright else (level - (lo + hi) / 2) / 255.0, float((ink > 64).mean()))
                a = preprocess_ink(ink, cfg).astype(np.float32)  # RAW_SIZE×RAW_SIZE
                thumbs[i] = np.rint(a.reshape(THUMB, f, THUMB, f).mean((1, 3)))
            except Exception:  # noqa: BLE001 - a file the loader decoded but we cannot reopen: unknown stats
                pass
    return stats, thumbs


def has_raw_files(paths: Optional[list[str]]) -> bool:
    if not paths or not isinstance(paths[0], str):
        return False
    p = paths[0]
    return "!/" in p or os.path.isfile(p)


def raw_stats(paths: list[str], progress: Optional[Progress] = None) -> tuple[np.ndarray, np.ndarray]:
    """One pass over the raw files: (N×2 [polarity, ink coverage], NaN where unreadable;
    N×THUMB×THUMB uint8 thumbnails at RAW_SIZE preprocessing).

    polarity = (paper level - mid-range) / 255: > 0 dark ink on light paper, < 0 light ink on dark."""
    from .data.sources import map_chunks

    bounds = [(a, min(a + 64, len(paths))) for a in range(0, len(paths), 64)]
    res = map_chunks(_raw_chunk, [(paths[a:b],) for a, b in bounds], [b - a for a, b in bounds],
                     progress, "reading the raw files (polarity, ink, fine thumbnails)")
    if not res:
        return np.zeros((0, 2), np.float32), np.zeros((0, THUMB, THUMB), np.uint8)
    return np.concatenate([r[0] for r in res]), np.concatenate([r[1] for r in res])


# ---------------------------------------------------------------------------------- the report

@dataclass
class HealthReport:
    table: pd.DataFrame  # one row per image: split, index, path, label, x, y (map; NaN off it), pca_x, pca_y, on_map, flag, far_score, pred, correct
    duplicates: list[dict]  # {"paths", "kind", "splits", "rows"}
    leaks: pd.DataFrame  # test, train, distance, test_row, train_row
    outliers: pd.DataFrame  # path, kind, score, row
    overlap: pd.DataFrame  # a, b, overlap (share of k-NN links exchanged)
    lookalikes: list[list[str]]  # groups of classes that overlap
    meta: dict = field(default_factory=dict)  # thresholds, embedding, map method, seconds, notes
    from_cache: bool = False
    datasets: dict = field(default_factory=dict, repr=False)  # split -> CharDataset, for images

    @property
    def n(self) -> int:
        return len(self.table)

    def image(self, row: int) -> np.ndarray:
        """Table row -> its H×W uint8 image (as the model sees it)."""
        r = self.table.iloc[int(row)]
        return self.datasets[r["split"]].images[int(r["index"]), 0].numpy()

    def images(self, rows) -> np.ndarray:
        """Table rows -> uint8 R×H×W, gathered one split at a time (not row by row)."""
        rows = np.asarray(list(rows), np.int64)
        if not len(rows):
            return np.zeros((0, 1, 1), np.uint8)
        split = self.table["split"].to_numpy()[rows]
        index = self.table["index"].to_numpy(np.int64)[rows]
        first = self.datasets[split[0]].images
        out = np.empty((len(rows), *first.shape[-2:]), np.uint8)
        for s in np.unique(split):
            at = np.flatnonzero(split == s)
            out[at] = self.datasets[s].images[torch.from_numpy(index[at]), 0].numpy()
        return out

    def map_rows(self) -> np.ndarray:
        """The rows the map draws, ascending (`map_sample`)."""
        if "on_map" not in self.table:
            return np.arange(self.n)
        return np.flatnonzero(self.table["on_map"].to_numpy(bool))

    def counts(self) -> dict:
        kinds = self.outliers["kind"].value_counts().to_dict() if len(self.outliers) else {}
        return {"images": self.n, "leaks": len(self.leaks),
                "exact_duplicate_groups": sum(g["kind"] == "exact" for g in self.duplicates),
                "near_duplicate_groups": sum(g["kind"] == "near" for g in self.duplicates),
                "blank": int(kinds.get("blank", 0)), "inverted": int(kinds.get("inverted", 0)),
                "far": int(kinds.get("far", 0)), "lookalike_groups": len(self.lookalikes)}

    def summary_lines(self) -> list[str]:
        c = self.counts()
        tested = (self.table["split"] == "test").sum()
        leak = (f"{c['leaks']} of {tested} test images have a near-copy in train" if tested
                else "no test split: nothing can leak")
        return [leak,
                f"{c['exact_duplicate_groups']} groups of exact duplicates, {c['near_duplicate_groups']} of near-duplicates "
                f"(RMS thumbnail difference <= {self.meta.get('near_threshold', NEAR_THRESHOLD):g})",
                f"outliers: {c['blank']} blank, {c['inverted']} inverted, {c['far']} far from every class "
                f"(over {self.meta.get('far_factor', FAR_FACTOR):g}× the usual in-class distance)",
                f"{c['lookalike_groups']} groups of look-alike classes"
                + (": " + "; ".join("/".join(g) for g in self.lookalikes[:12]) if self.lookalikes else "")]

    def to_dict(self) -> dict:
        """What `charlab data health --json` prints."""
        return {"counts": self.counts(), "summary": self.summary_lines(), "meta": self.meta,
                "duplicates": [{k: g[k] for k in ("paths", "kind", "splits")} for g in self.duplicates],
                "leaks": [{"test": r.test, "train": r.train, "distance": round(float(r.distance), 4)}
                          for r in self.leaks.itertuples()],
                "outliers": [{"path": r.path, "kind": r.kind, "score": round(float(r.score), 4)}
                             for r in self.outliers.itertuples()],
                "lookalikes": self.lookalikes,
                "overlap": [{"a": r.a, "b": r.b, "overlap": round(float(r.overlap), 4)} for r in self.overlap.itertuples()]}


def check(datasets: dict, predictor=None, *, embedding: str = "model", method: str = "umap",
          near_threshold: float = NEAR_THRESHOLD, seed: int = 0, cache_dir: str | os.PathLike | None = None,
          progress: Optional[Progress] = None) -> HealthReport:
    """Every health check on the splits given ({"train": ds, "val": ds, "test": ds}; None or empty
    splits are left out), with `embedding` (model | pixels) and a `method` map (besides PCA).

    The model embedding falls back to pixels, with a note, when there is no model or it cannot
    take these images (another size). Cached on disk; `report.from_cache` says so."""
    from .interpret import dataset_fingerprint

    EMBEDDINGS.get(embedding)
    MAPS.get(method)
    datasets = {k: v for k, v in datasets.items() if v is not None and len(v)}
    if not datasets:
        raise DataError("no images to check")
    notes = []
    if embedding == "model":
        reason = None
        if predictor is None:
            reason = "no model is active"
        elif tuple(next(iter(datasets.values())).images.shape[-2:]) != tuple(predictor.input_shape):
            reason = f"the model takes {predictor.input_shape[0]}×{predictor.input_shape[1]} images"
        if reason:
            notes.append(f"pixel embedding: {reason}")
            embedding, predictor = "pixels", None
    else:
        predictor = None
    fps = {k: dataset_fingerprint(v) for k, v in datasets.items()}
    key = _key("health", CACHE_VERSION, embedding, method, near_threshold, seed, K, FAR_FACTOR, OVERLAP_MIN, MAP_POINTS,
               BLANK_SHARE, INVERTED_MAX_SHARE, predictor.fingerprint() if predictor is not None else "",
               sorted(fps.items()))
    path = _cache_folder(cache_dir) / f"health-{key}.npz"
    hit = _load_report(path)
    if hit is not None:
        hit.datasets = datasets
        return hit
    t0 = time.perf_counter()
    report = _compute(datasets, predictor, embedding, method, near_threshold, seed, cache_dir, progress, notes)
    report.meta["seconds"] = round(time.perf_counter() - t0, 2)
    _save_report(path, report)
    return report


def _compute(datasets, predictor, embedding, method, thr, seed, cache_dir, progress, notes) -> HealthReport:
    splits = list(datasets)
    classes = list(next(iter(datasets.values())).classes)
    pos = {c: i for i, c in enumerate(classes)}
    split_col, index_col, label_col, paths, hashes, imgs = [], [], [], [], [], []
    for s, ds in datasets.items():
        n = len(ds)
        split_col += [s] * n
        index_col.append(np.arange(n))
        names = [ds.classes[i] for i in ds.labels.tolist()]
        for c in names:
            if c not in pos:
                pos[c] = len(classes)
                classes.append(c)
        label_col += names
        sp = ds.source_paths() if hasattr(ds, "source_paths") else ds.paths
        paths += sp if sp is not None else [f"{s}#{i}" for i in range(n)]
        hashes += list(ds.hashes) if getattr(ds, "hashes", None) is not None else [None] * n
        imgs.append(ds.images)
    images = torch.cat(imgs)  # N×1×H×W uint8
    n = len(images)
    split_arr = np.array(split_col)
    labels = np.array([pos[c] for c in label_col], np.int64)
    raw_paths = sum((list(ds.paths) if ds.paths is not None else [None] * len(ds) for ds in datasets.values()), [])

    # --- embedding (+ the model's predictions, from the same forward pass)
    probs = None
    if embedding == "model":
        parts = [embed(ds, predictor, "model", cache_dir, progress) for ds in datasets.values()]
        emb = np.concatenate([p[0] for p in parts])
        probs = np.concatenate([p[1] for p in parts])
    else:
        emb = pixel_features(images)[0]

    # --- blank: no ink after preprocessing, or a raw file with almost no ink
    peak = images.reshape(n, -1).amax(1).numpy() if n else np.zeros(0)
    blank = peak < 8
    raw = None
    thumbs = thumbnails(images)  # N×D, RMS-scaled
    if has_raw_files(raw_paths) and all(p is not None for p in raw_paths):
        raw, fine = raw_stats(raw_paths, progress)
        if thumbs.shape[1] == THUMB * THUMB:
            read = ~np.isnan(raw[:, 0])
            thumbs[read] = fine[read].reshape(int(read.sum()), -1).astype(np.float32) / (255.0 * THUMB)
    else:
        notes.append("polarity and raw ink not checked: the source has no image files")
    blank_score = np.zeros(n, np.float32)
    if raw is not None:
        cover = raw[:, 1]
        med = float(np.nanmedian(cover[~blank])) if (~blank).any() else 0.0
        if med > 0:
            blank_score = np.nan_to_num(cover / med, nan=1.0).astype(np.float32)
            blank |= blank_score < BLANK_SHARE

    # --- exact duplicates by content hash (blanks are reported as blank, not as copies of each other)
    hash_key = [h if h is not None else "px:" + hashlib.blake2b(images[i].numpy().tobytes(), digest_size=8).hexdigest()
                for i, h in enumerate(hashes)]
    if any(h is None for h in hashes):
        notes.append("exact duplicates by preprocessed pixels: the source gives no content hashes")
    by_hash: dict[str, list[int]] = {}
    for i, h in enumerate(hash_key):
        if not blank[i]:
            by_hash.setdefault(h, []).append(i)
    exact_groups = [g for g in by_hash.values() if len(g) > 1]
    rep = np.arange(n)  # each image's exact-group representative
    for g in exact_groups:
        rep[g] = g[0]

    # --- neighbours in embedding space: far outliers, class overlap, the map
    ok = ~blank
    z = _standardise(emb)
    red = pca(z, PCA_DIMS, seed) if z.shape[1] > PCA_DIMS else z
    # one scan of the distances gives both the k nearest neighbours and the far scores; blanks
    # take part in the neighbour graph (the map shows them) but not in the class statistics
    far_score, nbr_idx, nbr_dist = far_scores(red, np.where(ok, labels, -1), progress=progress, k=K)
    far_score[~ok] = 0.0
    far = (far_score > FAR_FACTOR) & ok

    # --- near duplicates among distinct, non-blank contents
    cand = np.flatnonzero((rep == np.arange(n)) & ~blank)
    ii, jj, dd = near_pairs(thumbs[cand], thr, progress=progress)
    ii, jj = cand[ii], cand[jj]
    uf = _UnionFind(n)
    for a, b in zip(ii.tolist(), jj.tolist()):
        uf.union(a, b)
    near_groups = uf.groups(np.concatenate([ii, jj])) if len(ii) else []
    members = {r: g for g in exact_groups for r in g[:1]}
    duplicates = []
    for g in exact_groups:
        duplicates.append(_group(g, "exact", paths, split_arr))
    for g in near_groups:
        full = sorted({m for r in g for m in members.get(r, [r])})
        if not far[full].all():  # copies of junk are reported as junk (outliers), not as copies
            duplicates.append(_group(full, "near", paths, split_arr))
    duplicates.sort(key=lambda d: (-len(d["rows"]), d["paths"][0]))

    # --- leaks: each test image's closest copy among train + val
    leaks = _leaks(ii, jj, dd, exact_groups, split_arr, paths, blank)

    # --- inverted polarity (raw files only)
    inverted = np.zeros(n, bool)
    pol = np.zeros(n, np.float32)
    if raw is not None:
        pol = np.nan_to_num(raw[:, 0])
        decided = (np.abs(pol) >= POLARITY_MARGIN) & ~blank
        if decided.any():
            light = pol > 0
            share_light = light[decided].mean()
            minority = light if share_light < 0.5 else ~light
            if min(share_light, 1 - share_light) <= INVERTED_MAX_SHARE:
                inverted = minority & decided

    outliers = pd.DataFrame(
        [(paths[i], "blank", float(blank_score[i]), i) for i in np.flatnonzero(blank)]
        + [(paths[i], "inverted", float(abs(pol[i])), i) for i in np.flatnonzero(inverted)]
        + [(paths[i], "far", float(far_score[i]), i) for i in np.flatnonzero(far)],
        columns=_OUTLIER_COLUMNS)
    if len(outliers):
        outliers = outliers.sort_values(["kind", "score"], ascending=[True, False]).reset_index(drop=True)

    overlap, lookalikes = _overlap(labels[ok], nbr_idx[ok], ok, classes)

    flag = np.full(n, "ok", dtype=object)
    dup_rows = {r for d in duplicates for r in d["rows"]}
    flag[list(dup_rows)] = "duplicate"
    flag[leaks["test_row"].to_numpy(int)] = "leak"
    flag[leaks["train_row"].to_numpy(int)] = "leak"
    flag[far] = "far"
    flag[inverted] = "inverted"
    flag[blank] = "blank"

    # --- the map: PCA of every image; the non-linear map of the points drawn only (map_sample),
    # laid out on their own k-NN graph (UMAP's layout costs grow with N; 15,000 points take a
    # quarter of 60,000's time, and the page would not draw the rest)
    if progress:
        progress(0, 1, f"drawing the map ({method})")
    on_map = map_sample(flag, MAP_POINTS, seed)
    xy_pca = map_pca(z, seed=seed)
    if method == "pca":
        xy = xy_pca
    elif on_map.all():
        xy = MAPS.get(method)(red, nbr_idx, nbr_dist, seed)
    else:
        drawn = np.flatnonzero(on_map)
        xy = np.full((n, 2), np.nan, np.float32)  # N×2, NaN off the map
        xy[drawn] = MAPS.get(method)(red[drawn], *knn(red[drawn], K), seed)
    if progress:
        progress(1, 1, f"drawing the map ({method})")

    table = pd.DataFrame({"split": split_arr, "index": np.concatenate(index_col), "path": paths,
                          "label": label_col, "x": xy[:, 0], "y": xy[:, 1], "pca_x": xy_pca[:, 0],
                          "pca_y": xy_pca[:, 1], "on_map": on_map, "flag": flag.astype(str), "far_score": far_score,
                          "hash": [h or "" for h in hashes]})
    if probs is not None:
        mp = [predictor.classes[j] for j in probs.argmax(1)]
        table["pred"] = mp
        known = set(predictor.classes)
        table["correct"] = np.where([c in known for c in label_col], np.array(mp) == np.array(label_col), np.nan)
    meta = {"embedding": embedding, "method": method, "near_threshold": thr, "far_factor": FAR_FACTOR,
            "overlap_min": OVERLAP_MIN, "k": K, "blank_share": BLANK_SHARE, "splits": splits,
            "model": predictor.name if predictor is not None else None, "notes": notes,
            "dims": int(emb.shape[1]) if emb.ndim == 2 else 0}
    return HealthReport(table=table, duplicates=duplicates, leaks=leaks, outliers=outliers, overlap=overlap,
                        lookalikes=lookalikes, meta=meta, datasets=datasets)


def _group(rows, kind, paths, split_arr) -> dict:
    rows = sorted(int(r) for r in rows)
    return {"paths": [paths[r] for r in rows], "kind": kind, "splits": sorted({str(split_arr[r]) for r in rows}),
            "rows": rows}


_LEAK_COLUMNS = ["test", "train", "distance", "test_row", "train_row"]
_OUTLIER_COLUMNS = ["path", "kind", "score", "row"]


def _leaks(ii, jj, dd, exact_groups, split_arr, paths, blank) -> pd.DataFrame:
    best: dict[int, tuple[float, int]] = {}

    def offer(t: int, o: int, d: float) -> None:
        if split_arr[t] == "test" and split_arr[o] != "test" and not blank[t]:
            if t not in best or d < best[t][0]:
                best[t] = (d, o)

    for g in exact_groups:
        for a in g:
            for b in g:
                if a != b:
                    offer(a, b, 0.0)
    for a, b, d in zip(ii.tolist(), jj.tolist(), dd.tolist()):
        offer(a, b, d)
        offer(b, a, d)
    # an exact copy of a test image's near-copy in train also leaks: exact groups extend near pairs
    rows = sorted(best.items(), key=lambda kv: (kv[1][0], kv[0]))
    return pd.DataFrame({"test": [paths[t] for t, _ in rows], "train": [paths[o] for _, (_, o) in rows],
                         "distance": np.array([d for _, (d, _) in rows], np.float32),
                         "test_row": np.array([t for t, _ in rows], np.int64),
                         "train_row": np.array([o for _, (_, o) in rows], np.int64)})


def _standardise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if len(x) < 2:
        return x
    sd = x.std(0)
    scale = float(np.sqrt((sd ** 2).sum())) or 1.0  # one global scale: keeps the metric, removes units
    return (x - x.mean(0)) / scale


def _overlap(labels, nbr_idx, ok, classes) -> tuple[pd.DataFrame, list[list[str]]]:
    """Classes that exchange k-NN links: share of links between a and b over all links of a and b."""
    c = len(classes)
    empty = pd.DataFrame({"a": [], "b": [], "overlap": []})
    if c < 2 or len(labels) == 0 or nbr_idx.shape[1] == 0:
        return empty, []
    all_labels = np.full(len(ok), -1, np.int64)
    all_labels[np.flatnonzero(ok)] = labels
    nb = all_labels[nbr_idx]  # n×k labels of each image's neighbours (-1: blank)
    src = np.repeat(labels, nb.shape[1])
    dst = nb.ravel()
    keep = dst >= 0
    m = np.bincount(src[keep] * c + dst[keep], minlength=c * c).reshape(c, c).astype(np.float64)  # C×C links
    links = m.sum(1)
    sym = m + m.T
    denom = links[:, None] + links[None, :]
    share = np.divide(sym, denom, out=np.zeros_like(sym), where=denom > 0)
    a, b = np.nonzero(np.triu(share >= OVERLAP_MIN, k=1))
    df = pd.DataFrame({"a": [classes[i] for i in a], "b": [classes[j] for j in b], "overlap": share[a, b]})
    df = df.sort_values("overlap", ascending=False).reset_index(drop=True)
    uf = _UnionFind(c)
    for i, j in zip(a.tolist(), b.tolist()):
        uf.union(i, j)
    groups = [[classes[i] for i in g] for g in uf.groups(np.concatenate([a, b]))] if len(a) else []
    groups.sort(key=lambda g: (-len(g), g))
    return df, groups


# ---------------------------------------------------------------------------------- cache

def _key(*parts) -> str:
    return hashlib.blake2b(json.dumps(parts, default=str).encode(), digest_size=10).hexdigest()


def _cache_folder(cache_dir) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    from .data import cache_dir as data_cache

    return data_cache() / "health"


def _read_npz(path: Path) -> Optional[dict]:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception:  # noqa: BLE001 - a torn or foreign file is only a cache miss
        return None


def _write_npz(path: Path, **arrays) -> None:
    buf = io.BytesIO()
    np.savez(buf, **{k: v for k, v in arrays.items() if v is not None})
    try:
        atomic_write_bytes(path, buf.getvalue())
    except (OSError, CharlabError):
        pass  # a read-only or full cache only costs the speed-up


def _save_report(path: Path, r: HealthReport) -> None:
    cols = {f"t_{c}": (r.table[c].to_numpy() if pd.api.types.is_numeric_dtype(r.table[c]) else r.table[c].to_numpy(dtype=str))
            for c in r.table.columns}
    doc = {"duplicates": r.duplicates, "leaks": r.leaks.to_dict("list"), "outliers": r.outliers.to_dict("list"),
           "overlap": r.overlap.to_dict("list"), "lookalikes": r.lookalikes, "meta": r.meta,
           "columns": list(r.table.columns)}
    _write_npz(path, doc=np.array(json.dumps(doc, default=_jsonable)), **cols)


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(type(v).__name__)


def _load_report(path: Path) -> Optional[HealthReport]:
    z = _read_npz(path)
    if z is None or "doc" not in z:
        return None
    try:
        doc = json.loads(str(z["doc"]))
        table = pd.DataFrame({c: z[f"t_{c}"] for c in doc["columns"]})
        leaks = pd.DataFrame(doc["leaks"], columns=_LEAK_COLUMNS).astype(
            {"distance": np.float32, "test_row": np.int64, "train_row": np.int64})
        outliers = pd.DataFrame(doc["outliers"], columns=_OUTLIER_COLUMNS)
        overlap = pd.DataFrame(doc["overlap"], columns=["a", "b", "overlap"])
        return HealthReport(table=table, duplicates=doc["duplicates"], leaks=leaks, outliers=outliers, overlap=overlap,
                            lookalikes=doc["lookalikes"], meta=doc["meta"], from_cache=True)
    except Exception:  # noqa: BLE001 - an old layout is a miss
        return None
