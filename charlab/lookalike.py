"""Look-alike classes: characters a lone, cropped glyph cannot tell apart (c/C, o/O/0, 1/l …).

The groups are LEARNED from a model's own confusion on its validation data: two classes join
when the model, on images of either, gives the other a large share of its probability (a soft
confusion, so a few dozen validation images per class suffice). Classes linked that way form one
group (union-find), so o-O and O-0 make o/O/0.

A checkpoint trained by this charlab stores its groups (`lookalike` in the checkpoint dict,
written at the end of training). For older checkpoints the groups are learned from their own
validation split when that data is at hand, and only failing that come from `FALLBACK`: the case
pairs whose lower case is a scaled capital (EMNIST's balanced merges), the round 0/O/o and 1/I/l.

Analysis only: arrays, lists and dicts; the pages and the CLI show them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

# Characters a lone handwritten glyph cannot tell apart by shape alone; only for checkpoints
# that carry no learned groups and whose validation data is not at hand.
FALLBACK = ("cC", "kK", "mM", "oO0", "pP", "sS", "uU", "vV", "wW", "xX", "yY", "zZ", "1Il", "jJ", "iI")
MIN_SHARE = 0.12  # mean probability one class's images give the other (both ways averaged) to link them
SHOW_SHARE = 0.10  # the Draw page names a group when its other members hold at least this probability
AUDIT_MAX_GROUP = 4  # the label audit sets aside learned groups of at most this many classes (for_audit)


@dataclass
class Lookalikes:
    groups: list[list[str]]  # each of 2+ classes, in class order
    source: str  # where they came from, in words
    scores: dict = field(default_factory=dict)  # "a|b" -> the linking soft-confusion share (learned only)

    def to_dict(self) -> dict:
        return {"groups": [list(g) for g in self.groups], "source": self.source, "scores": dict(self.scores)}

    @classmethod
    def from_dict(cls, d: dict) -> "Lookalikes":
        return cls(groups=[[str(c) for c in g] for g in d.get("groups", [])], source=str(d.get("source", "")),
                   scores={str(k): float(v) for k, v in dict(d.get("scores", {})).items()})

    def index(self, classes: Sequence[str]) -> np.ndarray:
        return group_index(classes, self.groups)

    def describe(self) -> str:
        return " · ".join("/".join(g) for g in self.groups) or "none"


def fallback(classes: Sequence[str]) -> Lookalikes:
    groups = _merge([[c for c in g if c in set(classes)] for g in FALLBACK], classes)
    return Lookalikes(groups=groups, source="the built-in case-pair list, with no validation confusion at hand")


def learn(probs: np.ndarray, targets: np.ndarray, classes: Sequence[str], min_share: float = MIN_SHARE,
          source: str = "") -> Lookalikes:
    """Groups from soft confusion: S[i, j] = mean probability of class j over the images of class i
    (probs N×C, targets N). Classes i, j link when (S[i, j] + S[j, i]) / 2 >= min_share."""
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    C = len(classes)
    sums = np.zeros((C, C))
    np.add.at(sums, targets, probs)  # row i: summed probabilities over images of class i
    n = np.bincount(targets, minlength=C).astype(np.float64)
    S = np.divide(sums, n[:, None], out=np.zeros_like(sums), where=n[:, None] > 0)  # C×C
    sym = (S + S.T) / 2
    np.fill_diagonal(sym, 0)
    both = (n[:, None] > 0) & (n[None, :] > 0)  # a class without images cannot vouch for a link
    i, j = np.nonzero(np.triu(sym >= min_share) & both)
    scores = {f"{classes[a]}|{classes[b]}": round(float(sym[a, b]), 3) for a, b in zip(i, j)}
    groups = _merge([[classes[a], classes[b]] for a, b in zip(i, j)], classes)
    return Lookalikes(groups=groups, scores=scores,
                      source=source or f"learned from the validation confusion ({len(targets)} images)")


def _merge(pairs: list[list[str]], classes: Sequence[str]) -> list[list[str]]:
    """Union-find over class names: overlapping groups become one; each sorted in class order."""
    parent = {c: c for c in classes}

    def root(c):
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for g in pairs:
        g = [c for c in g if c in parent]
        for c in g[1:]:
            parent[root(c)] = root(g[0])
    rank = {c: k for k, c in enumerate(classes)}
    out: dict[str, list[str]] = {}
    for c in classes:
        out.setdefault(root(c), []).append(c)
    groups = [sorted(g, key=rank.get) for g in out.values() if len(g) > 1]
    return sorted(groups, key=lambda g: rank[g[0]])


def group_index(classes: Sequence[str], groups: Sequence[Sequence[str]]) -> np.ndarray:
    """Class index -> group id (the smallest class index of its group; a class alone is its own)."""
    pos = {c: k for k, c in enumerate(classes)}
    out = np.arange(len(classes), dtype=np.int64)
    for g in groups:
        ids = [pos[c] for c in g if c in pos]
        if ids:
            out[ids] = min(ids)
    return out


def grouped_accuracy(targets, preds, classes: Sequence[str], groups: Sequence[Sequence[str]]) -> float:
    """Accuracy when a prediction inside the true class's look-alike group counts as right."""
    g = group_index(classes, groups)
    targets, preds = np.asarray(targets, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    return float((g[targets] == g[preds]).mean()) if len(targets) else float("nan")


def twin_order(classes: Sequence[str]) -> list[int]:
    """Class indices with case twins side by side: 0 1 … 9 A a B b … (then any other name), so a
    confusion matrix shows case confusions as 2×2 blocks on its diagonal."""
    def key(k: int):
        c = classes[k]
        if len(c) == 1 and c.isalpha() and c.isascii():
            return (1, c.upper(), c.islower())
        return (0 if len(c) == 1 and c.isdigit() else 2, c, False)
    return sorted(range(len(classes)), key=key)


@dataclass
class GroupedGuess:
    label: str  # "c or C", or the class alone when its twins hold little
    prob: float  # the group's (or the class's) total probability
    split: list[tuple[str, float]]  # per member, most likely first (one entry for a lone class)


def grouped_top(top_probs: np.ndarray, classes: Sequence[str], lookalikes: Optional[Lookalikes],
                show_share: float = SHOW_SHARE) -> GroupedGuess:
    """The most likely class, or its look-alike group when the other members hold at least
    `show_share` of the probability: "c or C" 93% with the split c 51% / C 42%."""
    probs = np.asarray(top_probs, dtype=np.float64)
    best = int(probs.argmax())
    members = [best]
    if lookalikes is not None:
        g = lookalikes.index(classes)
        members = sorted(np.flatnonzero(g == g[best]).tolist(), key=lambda k: -probs[k])
    others = sum(probs[k] for k in members if k != best)
    if len(members) == 1 or others < show_share:
        return GroupedGuess(classes[best], float(probs[best]), [(classes[best], float(probs[best]))])
    shown = [k for k in members if k == best or probs[k] >= 0.01]
    return GroupedGuess(" or ".join(classes[k] for k in shown), float(probs[members].sum()),
                        [(classes[k], float(probs[k])) for k in shown])


def for_checkpoint(state: dict, classes: Sequence[str]) -> Optional[Lookalikes]:
    """The groups a checkpoint dict stores (None for an older checkpoint without them)."""
    d = state.get("lookalike") if isinstance(state, dict) else None
    if not isinstance(d, dict):
        return None
    la = Lookalikes.from_dict(d)
    la.groups = [[c for c in g if c in set(classes)] for g in la.groups]
    la.groups = [g for g in la.groups if len(g) > 1]
    return la


def for_predictor(predictor, progress=None) -> Lookalikes:
    """The groups a model's answers are read with: stored in its checkpoint; else learned from
    its confusion on its own validation split (loaded with its preprocessing and split seed), or
    its training split when it has none, and remembered in charlab's cache by the checkpoint's
    content hash; else, when that data is not on this machine, the fallback list."""
    import json

    from .data import cache_dir

    if predictor.lookalikes is not None:
        return predictor.lookalikes
    memo = cache_dir() / "lookalike" / f"{predictor.fingerprint()}.json" if predictor.paths else None
    if memo is not None and memo.is_file():
        try:
            return Lookalikes.from_dict(json.loads(memo.read_text()))
        except (OSError, ValueError, AttributeError):
            pass  # a torn or foreign file: learn again
    return _learn_own(predictor, progress, memo)


def _learn_own(predictor, progress, memo) -> Lookalikes:
    from .errors import CharlabError
    from .interpret import Interpretation, load_split
    from .io import atomic_write_json

    # A model trained on all of its data (val_fraction 0) has no validation split: its training
    # split's confusion is optimistic, but twins a cropped glyph cannot tell apart stay confused.
    for split in ("val", "train"):
        try:
            data, _ = load_split(predictor, None, split, progress=progress)
            interp = Interpretation.from_predictor(predictor, data, split, progress=progress)
        except (CharlabError, OSError):
            continue
        if interp.n:
            what = "validation split" if split == "val" else "training split (it has no validation split)"
            la = learn(interp.probs, interp.targets, interp.classes,
                       source=f"learned from its confusion on its {what}, {interp.n:,} images")
            if memo is not None:
                try:
                    atomic_write_json(memo, la.to_dict())
                except (OSError, CharlabError):
                    pass  # a read-only cache only costs the next call the learning again
            return la
    return fallback(predictor.classes)


def store(path, progress=None, learn_from=None) -> Lookalikes:
    """Learn a checkpoint's groups as `for_predictor` would on first use (its validation split, or
    its training split when it has none) and write them into the checkpoint file (atomically), so
    a shipped model carries them and the Draw page's first stroke need not learn them.

    `learn_from` (a checkpoint reference, "A+B" for an ensemble) learns them instead from another
    model's validation confusion: for a final fit on all the data, the same recipe trained with a
    validation split held out, whose confusion is honest where the final fit's own training-split
    confusion is optimistic (it learned those images). Its classes must be the checkpoint's."""
    import io

    import torch

    from .checkpoint import read_checkpoint_dict
    from .errors import CheckpointError
    from .io import atomic_write_bytes
    from .predict import load_predictor

    predictor = load_predictor(str(path))
    teacher = predictor if learn_from is None else load_predictor(str(learn_from))
    if list(teacher.classes) != list(predictor.classes):
        raise CheckpointError(f"{learn_from} has other classes than {path}: its confusion says nothing of these")
    teacher.lookalikes = None
    la = _learn_own(teacher, progress, None)
    if learn_from is not None:
        k = len(teacher.models)
        la.source += f" (of {k} model{'s' if k > 1 else ''} trained with it held out, not of this file's own)"
    state = read_checkpoint_dict(path)
    state["lookalike"] = la.to_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())
    return la


def for_audit(predictor, progress=None) -> Lookalikes:
    """The groups a label audit sets aside: the reference's own (`for_predictor`) joined with the
    built-in case pairs. A model's confusion misses twins its own training data kept apart (the
    synthetic-only model links only 0/O/o I/l P/p S/s Y/y on its printed fonts), while a
    handwritten c and C cropped to one size are one glyph whatever model reads them."""
    own = for_predictor(predictor, progress=progress)
    classes = list(predictor.classes)
    # A weak model confuses everything with everything: a "group" beyond the largest real one
    # (1/I/i/l) would hide real label errors, so only small learned groups are trusted here.
    small = [list(g) for g in own.groups if len(g) <= AUDIT_MAX_GROUP]
    groups = _merge(small + fallback(classes).groups, classes)
    return Lookalikes(groups=groups, scores=dict(own.scores),
                      source=f"{own.source}, joined with the built-in case pairs")
