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
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np

from .errors import CharlabError
from .registry import Registry

if TYPE_CHECKING:  # torch is imported by the functions that build tensors: config validation and
    import torch  # the CLI's choices read BALANCE_STRATEGIES.names() without it

    from .config import AugmentConfig, TrainConfig
    from .data.dataset import CharDataset

# oversample augments its copies in chunks so 60 classes × hundreds of copies stay small in memory
_OVERSAMPLE_CHUNK = 1024


class Strategy:
    """What one balancing strategy does at each place it acts; the base class is `none`."""

    def prepare(self, train: CharDataset, config: TrainConfig) -> tuple[CharDataset, Optional[torch.Tensor], Optional[str]]:
        """Before training: -> (training split, per-class loss weights or None, a note or None)."""
        return train, None, None

    def epoch_indices(self, labels: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        """The sample indices of one epoch: a plain permutation unless the strategy draws."""
        import torch

        return torch.randperm(len(labels), generator=generator)

    def effective_counts(self, c: np.ndarray, target: Optional[int]) -> np.ndarray:
        return c.astype(np.float64)

    def effective_weights(self, c: np.ndarray, kind: str, beta: float) -> np.ndarray:
        return (c > 0).astype(np.float64)


class _Oversample(Strategy):
    def prepare(self, train, config):
        out = oversample(train, config.balance_target, config.augment, config.seed)
        return out, None, f"oversampled the training split from {len(train)} to {len(out)} images"

    def effective_counts(self, c, target):
        t = _target(c, target)
        return np.where(c > 0, np.maximum(c, t), 0).astype(np.float64)


class _Sampler(Strategy):
    def epoch_indices(self, labels, generator):
        import torch

        if len(labels) == 0:
            return torch.zeros(0, dtype=torch.int64)
        return torch.multinomial(sampler_weights(labels), len(labels), replacement=True, generator=generator)

    def effective_counts(self, c, target):
        present = c > 0
        share = c.sum() / present.sum() if present.any() else 0.0
        return np.where(present, share, 0.0)


class _Loss(Strategy):
    def prepare(self, train, config):
        return train, class_weights(train.counts(), config.balance_weights), None

    def effective_weights(self, c, kind, beta):
        return class_weights(c, kind, beta).numpy().astype(np.float64)


# name -> Strategy, in menu order (the first, none, is TrainConfig's default)
BALANCE_STRATEGIES: Registry[Strategy] = Registry("balancing strategy", ordered=True)
for _name, _strategy in (("none", Strategy()), ("oversample", _Oversample()), ("sampler", _Sampler()),
                         ("loss", _Loss())):
    BALANCE_STRATEGIES.register(_name)(_strategy)

# name -> weights(counts of the classes that have images, float64; beta) -> their unnormalised weights
CLASS_WEIGHTS: Registry[Callable] = Registry("class-weight kind", ordered=True)


@CLASS_WEIGHTS.register("inverse")
def _inverse(c: np.ndarray, beta: float) -> np.ndarray:
    return 1.0 / c


@CLASS_WEIGHTS.register("effective")
def _effective(c: np.ndarray, beta: float) -> np.ndarray:
    return (1.0 - beta) / (1.0 - np.power(beta, c))


def get_strategy(strategy: str) -> Strategy:
    """The Strategy of a name; an unknown name fails listing the valid ones."""
    return BALANCE_STRATEGIES.get(strategy)


def _counts(counts) -> np.ndarray:
    c = np.asarray(counts.numpy() if hasattr(counts, "numpy") else counts)
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
    return get_strategy(strategy).effective_counts(_counts(counts), target)


def effective_weights(counts, strategy: str, kind: str = "inverse", beta: float = 0.999) -> np.ndarray:
    """Per-class loss weights under a strategy: `class_weights` for `loss`, 1 for classes with
    images otherwise (0 where a class has none, as class_weights does)."""
    return get_strategy(strategy).effective_weights(_counts(counts), kind, beta)


def class_weights(counts, kind: str = "inverse", beta: float = 0.999) -> torch.Tensor:
    """Per-class weights for weighted cross-entropy, float32, normalised to mean 1 over the
    classes that have images.

    - inverse: 1 / n_c;
    - effective: (1 − β) / (1 − β^n_c), the inverse of Cui et al.'s effective number of samples;
      β → 0 gives equal weights, β → 1 approaches inverse frequency.

    Classes with no image get weight 0: they never occur as a target, so their weight cannot
    change the loss, and 0 keeps an infinity out of the tensor.
    """
    import torch

    fn = CLASS_WEIGHTS.get(kind)
    if not 0 <= beta < 1:
        raise CharlabError(f"beta must be in [0, 1), got {beta}")
    c = _counts(counts).astype(np.float64)
    present = c > 0
    w = np.zeros_like(c)
    w[present] = fn(c[present], beta)
    if present.any():
        w[present] /= w[present].mean()
    return torch.as_tensor(w, dtype=torch.float32)


def sampler_weights(labels: torch.Tensor) -> torch.Tensor:
    """Per-sample weights 1 / (count of its class), float64: a weighted draw then picks every
    class with equal probability."""
    import torch

    labels = torch.as_tensor(labels, dtype=torch.int64)
    counts = torch.bincount(labels)
    return 1.0 / counts[labels].double()


def epoch_indices(labels: torch.Tensor, strategy: str, generator: Optional[torch.Generator]) -> torch.Tensor:
    """The sample indices of one epoch (int64, as many as labels): for `sampler`, a class-balanced
    weighted draw with replacement; for every other strategy a plain permutation."""
    return get_strategy(strategy).epoch_indices(labels, generator)


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
    import torch

    from .augment import augment_batch, get_preset, to_uint8
    from .data.dataset import content_hash, to_float

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
