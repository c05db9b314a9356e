"""Train / validation / test: the source's own test split, and a stratified, seeded validation split."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from ..config import DataConfig
from ..errors import DataError
from ..labels import LabelReport, apply as apply_labels
from ._registry import Progress
from .classes import class_lookup
from .dataset import CharDataset
from .sources import check_test_source, load_source, load_test_source


@dataclass
class Splits:
    train: CharDataset
    val: CharDataset
    test: Optional[CharDataset]  # None when the source has no test split and none was given
    notes: list[str] = field(default_factory=list)  # what was decided, in words, for the UI and the run log
    labels: LabelReport = field(default_factory=LabelReport)  # what the label override file (cfg.labels) changed

    def source_counts(self) -> tuple[list[str], np.ndarray, list[dict]]:
        """(classes, images per class, skipped files) of the training source as decoded (train +
        validation): unlike a listing, a file that does not decode is not counted, it is skipped."""
        return list(self.train.classes), self.train.counts() + self.val.counts(), list(self.train.skipped)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(train indices, val indices, classes left whole) with `fraction` of each class in val.

    Every class with at least 2 images gives at least one to val and keeps at least one in
    train; a class with a single image stays in train. Same labels + seed -> same split.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, val, single = [], [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if fraction <= 0:
            train.append(idx)
            continue
        if len(idx) < 2:
            single.append(int(c))
            train.append(idx)
            continue
        idx = rng.permutation(idx)
        n_val = int(min(max(round(len(idx) * fraction), 1), len(idx) - 1))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    cat = lambda parts: np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)  # noqa: E731
    return cat(train), cat(val), single


def align_classes(ds: CharDataset, classes: list[str], what: str = "test") -> CharDataset:
    """Relabel `ds` onto `classes` by name (the test split must speak the train split's class list)."""
    if list(ds.classes) == list(classes):
        return ds
    lookup = class_lookup(ds.classes, classes)
    unknown = [c for c, j in zip(ds.classes, lookup) if j < 0]
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        raise DataError(f"the {what} data ({ds.source}) has {len(unknown)} classes that the training data does not: "
                        f"{shown}")
    return CharDataset(images=ds.images, labels=torch.from_numpy(lookup)[ds.labels], classes=list(classes), paths=ds.paths,
                       skipped=ds.skipped, source=ds.source, info=ds.info, hashes=ds.hashes)


def load_splits(cfg: DataConfig, progress: Progress | None = None) -> Splits:
    """Load cfg.source and split it; the test split is cfg.test_source or the source's own."""
    check_test_source(cfg.source, cfg.test_source)  # before any decoding: a leak is refused, not loaded
    full = load_source(cfg.source, cfg, split="train", progress=progress)
    # The user's relabel / exclude decisions (charlab.labels) apply to the training data only:
    # they are keyed by the training source's own paths, and a test split stays as published.
    full, labels = apply_labels(full, cfg.labels)
    notes = list(full.info.get("notes", [])) + labels.notes()
    if cfg.test_source:
        test = load_test_source(cfg.test_source, cfg, progress=progress, train_source=cfg.source)
        notes.append(f"test split: {cfg.test_source} ({len(test)} images)")
    else:
        test = load_source(cfg.source, cfg, split="test", progress=progress)
        if test is None:
            notes.append("no test split: the source has none and no test source was given")
        else:
            notes.append(f"test split: the source's own ({test.source}, {len(test)} images)")
    if test is not None:
        test = align_classes(test, full.classes)
        missing = [c for c, n in zip(full.classes, np.bincount(test.labels.numpy(), minlength=full.num_classes)) if n == 0]
        if missing:
            notes.append(f"{len(missing)} classes have no test image: {', '.join(missing[:20])}")
    train_idx, val_idx, single = stratified_split(full.labels.numpy(), cfg.val_fraction, cfg.seed)
    if single:
        names = ", ".join(repr(full.classes[c]) for c in single)
        notes.append(f"{len(single)} class{'es' if len(single) > 1 else ''} with a single image kept in train, "
                     f"none in validation: {names}")
    notes.append(f"validation: {len(val_idx)} images ({cfg.val_fraction:.0%} of each class, stratified, seed {cfg.seed})")
    train = full.subset(train_idx)
    if cfg.strokes:  # the training images also as Draw-canvas pen strokes; validation and test stay as published
        from .strokes import with_strokes

        train = with_strokes(train, full, train_idx, cfg, progress=progress)
        notes.append(f"training split: {len(train_idx)} images + {cfg.strokes} stroke redrawing(s) of each "
                     f"(pens {cfg.stroke_pens[0]:g}-{cfg.stroke_pens[1]:g} px on the Draw canvas)")
    return Splits(train=train, val=full.subset(val_idx), test=test, notes=notes, labels=labels)
