"""Class balancing, selectable per run (TrainConfig.balance):

- `none`: the data as it is.
- `oversample`: every class below a target count (default: the median class count) is raised to
  the target with augmented copies of its own images, as the 36-class report did with rotated
  and sheared copies. Apply it to the TRAINING split only, after splitting, or copies of
  validation images leak into training.
- `sampler`: each epoch is a weighted draw with replacement of the usual epoch size, so every
  class is seen equally often in expectation.
- `loss`: class-weighted cross-entropy with inverse-frequency or effective-number weights
  (Cui et al. 2019, "Class-Balanced Loss Based on Effective Number of Samples").

`effective_counts` says what one epoch effectively sees under a strategy, for the app's
before/after chart; `effective_weights` gives the per-class loss weights that go with it.
A class with a single image works under every strategy; a class with no image stays at 0.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import torch

from .config import AugmentConfig
from .data.dataset import CharDataset, content_hash, to_float
from .errors import CharlabError

BALANCE_STRATEGIES = ("none", "oversample", "sampler", "loss")
WEIGHT_KINDS = ("inverse", "effective")

# oversample augments its copies in chunks so 60 classes × hundreds of copies stay small in memory
_OVERSAMPLE_CHUNK = 1024


def check_strategy(strategy: str) -> str:
    if strategy not in BALANCE_STRATEGIES:
        raise CharlabError(f"unknown balancing strategy {strategy!r}; valid: {', '.join(BALANCE_STRATEGIES)}")
    return strategy


def _counts(counts) -> np.ndarray:
    c = np.asarray(counts.numpy() if isinstance(counts, torch.Tensor) else counts)
    if c.ndim != 1 or (c.size and (c < 0).any()):
        raise CharlabError("class counts must be a 1-D array of non-negative numbers")
    return c.astype(np.int64)


def default_target(counts) -> int:
    """The median count of the classes that have images (empty classes would drag it to 0),
    rounded up, so at least half of the classes are already at or above it."""
    c = _counts(counts)
    present = c[c > 0]
    return int(np.ceil(np.median(present))) if present.size else 0


def _target(counts: np.ndarray, target: Optional[int]) -> int:
    if target is None:
        return default_target(counts)
    if int(target) < 1:
        raise CharlabError(f"oversample target must be a positive count, got {target}")
    return int(target)


def effective_counts(counts, strategy: str, target: Optional[int] = None) -> np.ndarray:
    """The images per class one epoch effectively sees (float64, class order).

    - none, loss: the counts themselves (loss re-weights, see `effective_weights`);
    - oversample: max(count, target) for classes with at least one image;
    - sampler: the expected counts of a class-balanced draw of the same epoch size, i.e.
      total / (classes with images) for each class with images.
    """
    c = _counts(counts)
    check_strategy(strategy)
    if strategy == "oversample":
        t = _target(c, target)
        return np.where(c > 0, np.maximum(c, t), 0).astype(np.float64)
    if strategy == "sampler":
        present = c > 0
        share = c.sum() / present.sum() if present.any() else 0.0
        return np.where(present, share, 0.0)
    return c.astype(np.float64)


def effective_weights(counts, strategy: str, kind: str = "inverse", beta: float = 0.999) -> np.ndarray:
    """Per-class loss weights under a strategy: `class_weights` for `loss`, 1 for classes with
    images otherwise (0 where a class has none, as class_weights does)."""
    c = _counts(counts)
    check_strategy(strategy)
    if strategy == "loss":
        return class_weights(c, kind, beta).numpy().astype(np.float64)
    return (c > 0).astype(np.float64)


def class_weights(counts, kind: str = "inverse", beta: float = 0.999) -> torch.Tensor:
    """Per-class weights for weighted cross-entropy, float32, normalised to mean 1 over the
    classes that have images.

    - inverse: 1 / n_c;
    - effective: (1 − β) / (1 − β^n_c), the inverse of Cui et al.'s effective number of samples;
      β → 0 gives equal weights, β → 1 approaches inverse frequency.

    Classes with no image get weight 0: they never occur as a target, so their weight cannot
    change the loss, and 0 keeps an infinity out of the tensor.
    """
    if kind not in WEIGHT_KINDS:
        raise CharlabError(f"unknown class-weight kind {kind!r}; valid: {', '.join(WEIGHT_KINDS)}")
    if not 0 <= beta < 1:
        raise CharlabError(f"beta must be in [0, 1), got {beta}")
    c = _counts(counts).astype(np.float64)
    present = c > 0
    w = np.zeros_like(c)
    if kind == "inverse":
        w[present] = 1.0 / c[present]
    else:
        w[present] = (1.0 - beta) / (1.0 - np.power(beta, c[present]))
    if present.any():
        w[present] /= w[present].mean()
    return torch.as_tensor(w, dtype=torch.float32)


def sampler_weights(labels: torch.Tensor) -> torch.Tensor:
    """Per-sample weights 1 / (count of its class), float64: a weighted draw then picks every
    class with equal probability."""
    labels = torch.as_tensor(labels, dtype=torch.int64)
    counts = torch.bincount(labels)
    return 1.0 / counts[labels].double()


def epoch_indices(labels: torch.Tensor, strategy: str, generator: Optional[torch.Generator]) -> torch.Tensor:
    """The sample indices of one epoch (int64, as many as labels): for `sampler`, a class-balanced
    weighted draw with replacement; for every other strategy a plain permutation."""
    check_strategy(strategy)
    n = len(labels)
    if strategy == "sampler" and n > 0:
        return torch.multinomial(sampler_weights(labels), n, replacement=True, generator=generator)
    return torch.randperm(n, generator=generator)


def oversample(ds: CharDataset, target: Optional[int] = None, cfg: Optional[AugmentConfig] = None,
               seed: int = 0) -> CharDataset:
    """Raise every class below `target` (default: the median class count) to `target` images
    with augmented copies of its own images, drawn round-robin from a seeded shuffle so every
    original is copied about equally often; a single-image class gets target − 1 variants of
    that image. Copies use `cfg`, or the 36-class report's rotation and shear (`report36`)
    when cfg is None or the identity (identical copies would only re-weight the class).

    Copies are appended after the originals; paths get a `#oversample<k>` suffix and
    `info["oversample"]` records the target and how many were added.
    """
    from .augment import augment_batch, get_preset, to_uint8

    counts = ds.counts()
    t = _target(counts, target)
    if cfg is None or cfg.is_identity():
        cfg = get_preset("report36")
    g = torch.Generator().manual_seed(int(seed))
    src: list[torch.Tensor] = []
    for c in np.flatnonzero((counts > 0) & (counts < t)):
        members = torch.nonzero(ds.labels == int(c)).squeeze(1)
        members = members[torch.randperm(len(members), generator=g)]
        need = t - int(counts[c])
        src.append(members.repeat((need + len(members) - 1) // len(members))[:need])
    if not src:
        return ds
    src_idx = torch.cat(src)  # M source indices
    copies = ds.subset(src_idx)
    chunks = []
    for i in range(0, len(src_idx), _OVERSAMPLE_CHUNK):
        x = to_float(copies.images[i : i + _OVERSAMPLE_CHUNK])  # B×1×H×W
        chunks.append(to_uint8(augment_batch(x, cfg, g)))
    images = torch.cat([ds.images, *chunks])
    info = {}
    for k, v in ds.info.items():
        if isinstance(v, torch.Tensor) and len(v) == len(ds):
            info[k] = torch.cat([v, copies.info[k]])
        else:
            info[k] = v
    info["oversample"] = {"target": t, "added": int(len(src_idx)), "preset": cfg.preset}
    paths = None
    if ds.paths is not None:
        paths = list(ds.paths) + [f"{p}#oversample{k}" for k, p in enumerate(copies.paths or [])]
    # an augmented copy is new content: hashed from its own pixels, so it never reads as a duplicate
    hashes = None if ds.hashes is None else list(ds.hashes) + [content_hash(c.numpy().data) for c in torch.cat(chunks)]
    return dataclasses.replace(ds, images=images, labels=torch.cat([ds.labels, copies.labels]), paths=paths,
                               skipped=list(ds.skipped), info=info, hashes=hashes)
