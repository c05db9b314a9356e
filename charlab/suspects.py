"""Label-issue suspects: samples whose given label the model confidently contradicts.

Confident learning (Northcutt, Jiang & Chuang 2021, "Confident Learning: Estimating
Uncertainty in Dataset Labels"), the core of it in numpy:
- per class j, a threshold t_j = the mean probability of class j over the samples labelled j
  (the model's average self-confidence for that class);
- a sample's confident class is the most probable class among those whose probability
  reaches their threshold; a sample is a suspect when that class is not its given label;
- the confident joint (given × confident class counts), calibrated so each row sums to the
  number of samples with that given label, estimates the share of wrong labels.

Probabilities must be out-of-fold (each sample scored by a model that never trained on it,
`out_of_fold_probs`) for honest scores: a model that has seen a wrong label partly
memorises it, so in-sample probabilities understate label errors. The report says which
kind it holds.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from .errors import CharlabError

Progress = Callable[[int, int, str], None]

IN_SAMPLE_NOTE = ("scores are IN-SAMPLE: the model trained on these very labels and partly memorised the wrong "
                  "ones, so label errors are understated; use out-of-fold probabilities (folds >= 2) for honest scores")
OUT_OF_FOLD_NOTE = "scores are out-of-fold: each sample was scored by a model that never trained on it"
WEAK_ACCURACY = 0.5  # below this agreement with the given labels the report warns that the model is weak


@dataclass
class SuspectReport:
    suspects: pd.DataFrame  # index, path, given, likely, score, prob_given, prob_likely; most suspect first
    pairs: pd.DataFrame  # given, likely, count, given_to_likely, likely_to_given; a swap A<->B is ONE line
    share: float  # estimated fraction of wrong labels (calibrated confident joint)
    in_sample: bool  # True when the probabilities came from a model trained on these labels
    note: str  # says whether the scores are in-sample, and what share means
    thresholds: Optional[np.ndarray] = None  # C per-class self-confidence thresholds
    n: int = 0  # samples analysed
    accuracy: float = float("nan")  # share of samples whose most probable class is the given label
    diagnosis: Optional["Diagnosis"] = None  # what is wrong with the labels (audit() fills it)
    reference: Optional[str] = None  # the reference model that scored the images (None: out of fold / in sample)
    source: str = ""  # the data source audited
    lookalikes: Optional[list] = None  # look-alike groups ([["c", "C"], ...]) whose mix-ups are not counted

    @property
    def n_lookalike(self) -> int:
        """Suspects whose likely label is a look-alike twin of the given one (c for C): ambiguities
        a cropped glyph cannot settle, neither offered for bulk acceptance nor counted as wrong."""
        return int(self.suspects["lookalike"].sum()) if "lookalike" in self.suspects.columns else 0

    def twins(self, a: str, b: str) -> bool:
        """Whether classes a and b are look-alike twins (in one of `lookalikes`' groups)."""
        return a != b and any(a in g and b in g for g in self.lookalikes or [])

    def to_dict(self, limit: int | None = None) -> dict:
        """JSON-able (what `charlab suspects --json` prints)."""
        sus = self.suspects if limit is None else self.suspects.head(limit)
        extra = [k for k in ("source_path", "hash", "lookalike") if k in sus.columns]
        out = {
            "source": self.source,
            "reference": self.reference,
            "suspects": [{"path": r["path"], "given": r["given"], "likely": r["likely"], "score": float(r["score"]),
                          "index": int(r["index"]), **{k: _plain(r[k]) for k in extra}} for r in sus.to_dict("records")],
            "pairs": [{k: (v if isinstance(v, str) else int(v)) for k, v in r.items()}
                      for r in self.pairs.to_dict("records")],
            "share": float(self.share),
            "n": int(self.n),
            "accuracy": float(self.accuracy),
            "n_suspects": int(len(self.suspects)),
            "n_lookalike": self.n_lookalike,
            "lookalikes": self.lookalikes,
            "in_sample": bool(self.in_sample),
            "note": self.note,
        }
        if self.diagnosis is not None:
            out["diagnosis"] = self.diagnosis.to_dict()
            out["classes"] = self.diagnosis.classes.to_dict("records")
        return out


def _plain(v):
    return bool(v) if isinstance(v, (bool, np.bool_)) else v


def find_suspects(probs, labels, classes: Sequence[str], paths: Optional[Sequence[str]] = None,
                  in_sample: bool = False, twins: Optional[np.ndarray] = None) -> SuspectReport:
    """probs N×C (out-of-fold preferably), labels N (given) -> ranked suspects and the pair summary.

    score = p(likely) - p(given), the normalised margin by which the model prefers its
    confident class over the given label (in [-1, 1]; higher is more suspect).
    `twins` (C: look-alike group id per class, charlab.lookalike.group_index) marks suspects whose
    likely label is a twin of the given one (`lookalike`); they count neither in `share` nor in
    the pairs.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, c = probs.shape if probs.ndim == 2 else (0, 0)
    if probs.ndim != 2 or len(labels) != n or c != len(classes):
        raise CharlabError(f"probs {probs.shape} do not fit {len(labels)} labels × {len(classes)} classes")
    if n and (labels.min() < 0 or labels.max() >= c):
        raise CharlabError(f"labels must lie in 0..{c - 1}")
    rows = np.arange(n)
    counts = np.bincount(labels, minlength=c)  # C
    self_conf = np.bincount(labels, weights=probs[rows, labels], minlength=c)  # C: summed p(given) per class
    # A class nobody is labelled with gets an unreachable threshold: no sample can be moved into it.
    thresholds = np.where(counts > 0, self_conf / np.maximum(counts, 1), np.inf)  # C

    above = probs >= thresholds[None, :]  # N×C
    has_conf = above.any(axis=1)  # N
    confident = np.where(above, probs, -1.0).argmax(axis=1)  # N
    suspect = has_conf & (confident != labels)
    idx = np.flatnonzero(suspect)
    score = probs[idx, confident[idx]] - probs[idx, labels[idx]]
    order = np.lexsort((idx, -score))  # most suspect first, ties by index
    idx, score = idx[order], score[order]
    suspects = pd.DataFrame({
        "index": idx.astype(np.int64),
        "path": [paths[i] for i in idx] if paths is not None else [f"#{i}" for i in idx],
        "given": [classes[k] for k in labels[idx]],
        "likely": [classes[k] for k in confident[idx]],
        "score": score,
        "prob_given": probs[idx, labels[idx]],
        "prob_likely": probs[idx, confident[idx]],
    })

    # Confident joint: rows = given label, cols = confident class, over samples with a confident class.
    joint = np.zeros((c, c), dtype=np.float64)
    np.add.at(joint, (labels[has_conf], confident[has_conf]), 1.0)
    row = joint.sum(axis=1, keepdims=True)
    calibrated = np.divide(joint * counts[:, None], row, out=np.zeros_like(joint), where=row > 0)
    same = np.eye(c, dtype=bool) if twins is None else np.asarray(twins)[:, None] == np.asarray(twins)[None, :]  # C×C
    share = float(calibrated[~same].sum() / n) if n else 0.0
    suspects["lookalike"] = same[labels[idx], confident[idx]]

    real = ~suspects["lookalike"].to_numpy()
    pairs = pair_summary(labels[idx][real], confident[idx][real], classes)
    accuracy = float((probs.argmax(axis=1) == labels).mean()) if n else float("nan")
    note = (IN_SAMPLE_NOTE if in_sample else OUT_OF_FOLD_NOTE) + _counts_note(suspects, n, share)
    if n and accuracy < WEAK_ACCURACY:
        # Confident learning trusts the model: a barely trained one flags its own mistakes as label issues.
        note += (f"; WARNING: the model agrees with only {accuracy:.0%} of the given labels, so many suspects "
                 f"may be its own mistakes; train longer or use a stronger model")
    return SuspectReport(suspects=suspects, pairs=pairs, share=share, in_sample=bool(in_sample), note=note,
                         thresholds=thresholds, n=n, accuracy=accuracy)


def _counts_note(suspects: pd.DataFrame, n: int, share: float) -> str:
    twin = int(suspects["lookalike"].sum()) if "lookalike" in suspects.columns else 0
    return (f"; {len(suspects) - twin} of {n} samples are suspects" + (f" (and {twin} look-alike ambiguities)" if twin else "")
            + f", estimated share of wrong labels {share:.1%}")


def pair_summary(given: np.ndarray, likely: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """Count (given, likely) pairs with both directions of a pair on one line, so a systematic
    swap of two classes is a single dominant line. The line reads in its more frequent direction."""
    c = len(classes)
    m = np.zeros((c, c), dtype=np.int64)
    np.add.at(m, (np.asarray(given, np.int64), np.asarray(likely, np.int64)), 1)
    fwd = np.triu(m, 1)  # i<j: given i -> likely j
    bwd = np.triu(m.T, 1)  # i<j: given j -> likely i
    i, j = np.nonzero(fwd + bwd)
    a, b = fwd[i, j], bwd[i, j]
    flip = b > a  # read the line in its dominant direction
    g = np.where(flip, j, i)
    lk = np.where(flip, i, j)
    df = pd.DataFrame({"given": [classes[k] for k in g], "likely": [classes[k] for k in lk],
                       "count": (a + b).astype(np.int64), "given_to_likely": np.maximum(a, b).astype(np.int64),
                       "likely_to_given": np.minimum(a, b).astype(np.int64)})
    return df.sort_values(["count", "given_to_likely"], ascending=False, kind="stable").reset_index(drop=True)


def stratified_folds(labels, folds: int, seed: int = 0) -> np.ndarray:
    """Fold number (0..folds-1) per sample, each class spread evenly over the folds."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        # Rotate the starting fold per class so small classes do not all land in fold 0.
        fold[idx] = (np.arange(len(idx)) + offset) % folds
        offset += len(idx)
    return fold


def _fold_progress(progress: Optional[Progress], k: int, total_folds: int) -> Optional[Progress]:
    if progress is None:
        return None

    def inner(done: int, total: int, msg: str = "") -> None:
        frac = done / total if total else 1.0
        progress(int(1000 * (k + frac)), 1000 * total_folds, f"model {k + 1}/{total_folds}: {msg}")

    return inner


def _train_and_predict(config, train, val, predict_on, progress) -> np.ndarray:
    from .data import Splits
    from .interpret import Interpretation
    from .training import fit

    if len(train) % config.batch_size == 1:  # a last batch of ONE image breaks BatchNorm in training mode
        config = copy.deepcopy(config)
        while len(train) % config.batch_size == 1:
            config.batch_size += 1
    splits = Splits(train=train, val=val, test=None, notes=[])
    result = fit(config, None, splits=splits, progress=progress)
    interp = Interpretation.from_model(result.model, list(train.classes), predict_on)
    return interp.probs


def _val_split(dataset, idx: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Carve a stratified validation share out of `idx` (for early stopping / best epoch)."""
    from .data import stratified_split

    tr, va, _ = stratified_split(dataset.labels.numpy()[idx], fraction, seed)
    return idx[tr], idx[va]


def out_of_fold_probs(config, dataset, folds: int = 3, progress: Optional[Progress] = None) -> np.ndarray:
    """Train `folds` models with charlab.training.fit, each on the other folds, and predict the
    held-out fold: N×C probabilities where no sample was scored by a model that saw its label.

    Each model picks its best epoch on a validation share carved from its own training folds
    (config.data.val_fraction), never from the held-out fold.
    """
    if folds < 2:
        raise CharlabError(f"out-of-fold probabilities need at least 2 folds, got {folds}")
    labels = dataset.labels.numpy()
    largest = int(np.bincount(labels).max()) if len(labels) else 0
    if folds > largest:  # folds beyond the largest class's count would hold no image at all
        raise CharlabError(f"{folds} folds is more than the {largest} images of the largest class; "
                           f"use --folds between 2 and {largest}")
    fold = stratified_folds(labels, folds, config.seed)
    probs = np.zeros((len(dataset), dataset.num_classes), dtype=np.float32)
    for k in range(folds):
        held = np.flatnonzero(fold == k)
        tr, va = _val_split(dataset, np.flatnonzero(fold != k), config.data.val_fraction, config.seed + k)
        cfg = copy.deepcopy(config)
        cfg.seed = config.seed + k
        probs[held] = _train_and_predict(cfg, dataset.subset(tr), dataset.subset(va) if len(va) else None,
                                         dataset.subset(held), _fold_progress(progress, k, folds))
    if progress is not None:
        progress(1, 1, "done")
    return probs


def in_sample_probs(config, dataset, progress: Optional[Progress] = None) -> np.ndarray:
    """One model trained on (most of) the data, scoring all of it: quick, but understates label errors."""
    tr, va = _val_split(dataset, np.arange(len(dataset)), config.data.val_fraction, config.seed)
    return _train_and_predict(config, dataset.subset(tr), dataset.subset(va) if len(va) else None, dataset,
                              _fold_progress(progress, 0, 1))



# --------------------------------------------------------------------------------------------
# Diagnosis: what is wrong with the labels, in words

DIAGNOSES = ("clean", "noisy", "swapped", "scrambled", "complementary")
SWAP_SHARE = 0.6  # a class "looks like" another when at least this share of its images does...
SWAP_OWN = 0.25  # ...and at most this share looks like itself (P/p look-alikes sit near 0.5/0.5)
# Agreement with the given labels over the agreement expected if labels ignored content:
# ~1 when labels are unrelated to the images, far below 1 when they avoid the true class.
SCRAMBLED_RATIO = 2.0
COMPLEMENTARY_RATIO = 0.35
# Estimated share of wrong labels above which scattered errors are called `noisy`. A reference that
# never saw the data disagrees more on clean data (Chars74K with the synthetic-only model: 17%,
# mostly look-alikes; 37% with 20% noise added); an out-of-fold model much less. With look-alike twins
# set aside (c read as C is no error) the same reference says 5% on clean trainPart1, 26% with 20% noise.
NOISY_SHARE = {"reference": 0.25, "reference without look-alikes": 0.12, "out-of-fold": 0.12}
# Out of fold, without a reference (charlab.complementary): labels that follow the images' own
# groups less than this are not the model's fault; avoidance below AVOIDS marks complementary ones.
CONSISTENT = 0.4
AVOIDS = 0.25


@dataclass
class Diagnosis:
    kind: str  # one of DIAGNOSES
    text: str  # one plain sentence
    classes: pd.DataFrame  # per given class: given, n, likely, share (of its images that look like likely), own
    likely: np.ndarray  # N: recovered label index per image, -1 where the diagnosis gives none
    swaps: list = field(default_factory=list)  # [{"classes": [a, b, ...], "counts": [...], "sizes": [...]}]
    evidence: dict = field(default_factory=dict)  # the numbers the kind was decided on

    def to_dict(self) -> dict:
        return {"kind": self.kind, "text": self.text, "swaps": self.swaps, "evidence": self.evidence}


def class_mapping(reading: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """given × read counts (C×C) and, per given class, what its images most likely are."""
    c = len(classes)
    m = np.zeros((c, c), dtype=np.int64)
    np.add.at(m, (labels, reading), 1)
    n = m.sum(axis=1)
    top = m.argmax(axis=1)
    rows = [{"given": classes[g], "n": int(n[g]), "likely": classes[top[g]],
             "share": float(m[g, top[g]] / n[g]), "own": float(m[g, g] / n[g])} for g in range(c) if n[g]]
    return m, pd.DataFrame(rows, columns=["given", "n", "likely", "share", "own"])


def _cycles(m: np.ndarray) -> list[list[int]]:
    """Classes whose images mostly look like another class, chained into cycles (a swap is a 2-cycle)."""
    n = m.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = m / n[:, None]
    target = {}
    for g in np.flatnonzero(n):
        t = int(m[g].argmax())
        if t != g and share[g, t] >= SWAP_SHARE and share[g, g] <= SWAP_OWN:
            target[int(g)] = t
    cycles, seen = [], set()
    for start in target:
        path, g = [], start
        while g in target and g not in path and g not in seen:
            path.append(g)
            g = target[g]
        if g in path:  # closed: the part from g on is a cycle
            cyc = path[path.index(g):]
            cycles.append(cyc)
            seen.update(cyc)
        seen.update(path)
    return sorted(cycles, key=lambda cyc: -sum(m[a, target[a]] for a in cyc))


def _swap_text(cyc: list[int], m: np.ndarray, classes: Sequence[str]) -> str:
    n = m.sum(axis=1)
    nxt = {a: cyc[(i + 1) % len(cyc)] for i, a in enumerate(cyc)}
    looks = [f"{m[a, nxt[a]]} of {n[a]} images in {classes[a]} look like {classes[nxt[a]]}" for a in cyc]
    if len(cyc) == 2:
        a, b = cyc
        return f"folders {classes[a]} and {classes[b]} are swapped: {looks[0]} and {looks[1]}"
    names = ", ".join(classes[a] for a in cyc[:-1]) + f" and {classes[cyc[-1]]}"
    return f"folders {names} are rotated: " + "; ".join(looks)


def diagnose(probs, labels, classes: Sequence[str], *, reference: bool, images=None, share: float | None = None,
             seed: int = 0, twins: Optional[np.ndarray] = None, lookalike: int = 0) -> Diagnosis:
    """Name what is wrong with the labels: clean, noisy, swapped, scrambled or complementary.

    probs N×C come from a `reference` model that never saw these labels (reference=True), or are
    out-of-fold probabilities of models trained on them. Out of fold a swap is invisible (the
    models learn it) and complementary labels look like a weak model; `images` (uint8 N×1×H×W)
    lets charlab.complementary test the labels against the images' own groups instead. `twins`
    (C look-alike group ids) lets a clean or noisy verdict count a reading as its given label's
    twin (C for c) as agreement; `lookalike` is how many suspects were set aside that way.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, c = probs.shape
    present = np.bincount(labels, minlength=c) > 0
    reading = np.where(present[None, :], probs, -1.0).argmax(axis=1)  # N: the model's class among the data's
    m, mapping = class_mapping(reading, labels, classes)
    agree = float(np.trace(m) / n) if n else float("nan")
    expected = float((m.sum(axis=1) * m.sum(axis=0)).sum() / n ** 2) if n else float("nan")  # if labels ignored content
    ratio = agree / expected if expected > 0 else float("inf")
    mode = "reference" if reference else "out-of-fold"
    ev = {"mode": mode, "agreement": agree, "chance_agreement": expected, "ratio": ratio,
          "share": float(share) if share is not None else None}
    likely = np.full(n, -1, dtype=np.int64)
    others = np.where(np.eye(c, dtype=bool)[labels] | ~present[None, :], -1.0, probs)  # N×C: never the given label

    if reference and ratio < COMPLEMENTARY_RATIO:
        likely = others.argmax(axis=1)
        return Diagnosis("complementary", _complementary_text(labels, likely, classes, agree, "the reference reads"),
                         mapping, likely, evidence=ev)
    if reference and ratio < SCRAMBLED_RATIO:
        likely = reading
        return Diagnosis("scrambled", f"the labels look unrelated to the images: the reference agrees with "
                         f"{agree:.0%} of them, about what chance gives ({expected:.0%}); its own reading is the "
                         f"best guess of the true labels", mapping, likely, evidence=ev)
    if reference:
        cycles = _cycles(m)
        if cycles:
            swaps = []
            for cyc in cycles:
                nxt = {a: cyc[(i + 1) % len(cyc)] for i, a in enumerate(cyc)}
                for a in cyc:  # images of a swapped class that the reference reads as its partner
                    hit = (labels == a) & (reading == nxt[a])
                    likely[hit] = nxt[a]
                swaps.append({"classes": [classes[a] for a in cyc], "looks_like": [classes[nxt[a]] for a in cyc],
                              "counts": [int(m[a, nxt[a]]) for a in cyc], "sizes": [int(m[a].sum()) for a in cyc]})
            text = _swap_text(cycles[0], m, classes) + (f" (and {len(cycles) - 1} more swap(s))" if len(cycles) > 1 else "")
            return Diagnosis("swapped", text, mapping, likely, swaps=swaps, evidence=ev)

    if not reference and images is not None and agree < WEAK_ACCURACY:
        from . import complementary

        av = complementary.recover(images, labels, c, seed=seed)
        ev.update(consistency=av.consistency, avoidance=av.avoidance)
        if av.consistency < CONSISTENT and av.avoidance < AVOIDS:
            return Diagnosis("complementary", _complementary_text(labels, av.recovered, classes, agree,
                             "grouping the images by likeness gives"), mapping, av.recovered, evidence=ev)
        if av.consistency < CONSISTENT:
            return Diagnosis("scrambled", f"the labels look unrelated to the images: models trained on them agree "
                             f"with {agree:.0%} of the held-out labels (chance: {expected:.0%}), and images that look "
                             f"alike carry different labels (only {av.consistency:.0%} share their group's most "
                             f"common label); they cannot be recovered without a reference model (--reference)",
                             mapping, likely, evidence=ev)
        weak = (f"; the labels do follow the images' own groups ({av.consistency:.0%} share their group's most common "
                f"label), so the model is weak: train longer or use a stronger model")
    elif not reference and agree < WEAK_ACCURACY:
        weak = "; the model may be too weak to judge the labels: train longer or use a stronger model"
    else:
        weak = ""
    share = float(share) if share is not None else 1.0 - agree
    kind = "noisy" if share > NOISY_SHARE[mode if twins is None or not reference else "reference without look-alikes"] else "clean"
    who = "the reference" if reference else "models that never saw them"
    if twins is not None:  # a reading as the label's look-alike twin (c for C) is no disagreement
        tw = np.asarray(twins)
        agree = float((tw[reading] == tw[labels]).mean()) if n else agree
        ev["agreement_with_lookalikes"] = agree
    aside = (f"; {lookalike} case/look-alike ambiguit{'y' if lookalike == 1 else 'ies'} (such as c read as C) "
             f"are not counted" if lookalike else "")
    if kind == "noisy":
        off = m - np.diag(np.diag(m))
        if twins is not None:
            off[np.asarray(twins)[:, None] == np.asarray(twins)[None, :]] = 0
        a, b = np.unravel_index(off.argmax(), off.shape)
        text = (f"about {share:.0%} of the labels look wrong, scattered over many classes ({who} agree"
                f"{'s' if reference else ''} with {agree:.0%}; the largest group: {off[a, b]} images in "
                f"{classes[a]} that look like {classes[b]}){aside}")
    else:
        text = (f"the labels look right: {who} agree{'s' if reference else ''} with {agree:.0%} of them, and "
                f"about {share:.0%} look wrong{aside}")
        if not reference:
            text += " (out of fold cannot see whole classes swapped; --reference can)"
    return Diagnosis(kind, text + weak, mapping, likely, evidence=ev)


def _complementary_text(labels, likely, classes, agree: float, how: str) -> str:
    c = len(classes)
    row = {}
    for g in range(c):
        sel = likely[labels == g]
        if len(sel):
            row[classes[g]] = np.bincount(sel, minlength=c)
    spread = np.mean([(v > 0).sum() for v in row.values()]) if row else 0
    return (f"almost no image sits in its own class ({agree:.0%} agree with their label): each folder holds "
            f"about {spread:.0f} other classes but never its own, so the labels say what each image is NOT; "
            f"{how} the true labels, which are suggested for every image")


def audit(probs, dataset, *, reference: Optional[str] = None, in_sample: bool = False, seed: int = 0,
          lookalikes=None) -> SuspectReport:
    """Confident learning plus the diagnosis, over a CharDataset whose labels are audited.

    Where the diagnosis recovers labels (a swap, complementary or scrambled labels), every image it
    recovers becomes a suspect with `likely` = the recovered label; the others keep confident
    learning's verdict. The pairs of a diagnosed swap come first. `lookalikes` (a
    charlab.lookalike.Lookalikes) marks suspects read as their label's look-alike twin (c for C):
    they stay listed (`lookalike` True) but count neither as wrong nor in the pairs.
    """
    labels = dataset.labels.numpy()
    classes = list(dataset.classes)
    twins = lookalikes.index(classes) if lookalikes is not None else None
    rep = find_suspects(probs, labels, classes, paths=dataset.paths, in_sample=in_sample, twins=twins)
    counted = rep.suspects["score"] > 0 if reference is not None else True
    diag = diagnose(probs, labels, classes, reference=reference is not None, images=dataset.images,
                    share=rep.share, seed=seed, twins=twins, lookalike=int((rep.suspects["lookalike"] & counted).sum()))
    probs = np.asarray(probs, dtype=np.float64)
    sus = rep.suspects
    rec = np.flatnonzero((diag.likely >= 0) & (diag.likely != labels))
    if len(rec):
        lk = diag.likely[rec]
        if reference is not None:
            score = probs[rec, lk] - probs[rec, labels[rec]]
        else:  # out-of-fold models learnt the given labels: the more they avoid the recovered class, the surer
            score = np.clip(1.0 - (len(classes) - 1) * probs[rec, lk], 0.0, 1.0)
        new = pd.DataFrame({"index": rec.astype(np.int64),
                            "path": [dataset.paths[i] for i in rec] if dataset.paths is not None else [f"#{i}" for i in rec],
                            "given": [classes[k] for k in labels[rec]], "likely": [classes[k] for k in lk],
                            "score": score, "prob_given": probs[rec, labels[rec]], "prob_likely": probs[rec, lk]})
        sus = pd.concat([new, sus[~sus["index"].isin(rec)]], ignore_index=True)
        sus = sus.iloc[np.lexsort((sus["index"].to_numpy(), -sus["score"].to_numpy()))].reset_index(drop=True)
    if reference is not None:  # the reference prefers the given label: confident learning's threshold artefact
        sus = sus[sus["score"] > 0].reset_index(drop=True)
    ids = twins if twins is not None else np.arange(len(classes))
    pos = {k: i for i, k in enumerate(classes)}
    sus["lookalike"] = np.array([ids[pos[g]] == ids[pos[lk]] for g, lk in zip(sus["given"], sus["likely"])], dtype=bool)
    rel = dataset.source_paths()
    sus["source_path"] = [rel[i] for i in sus["index"]] if rel is not None else [None] * len(sus)
    sus["hash"] = [dataset.hashes[i] for i in sus["index"]] if dataset.hashes is not None else [None] * len(sus)
    pairs = rep.pairs
    if diag.swaps and len(pairs):
        swapped = {frozenset(x) for sw in diag.swaps for x in zip(sw["classes"], sw["looks_like"])}
        first = np.array([frozenset((g, lk)) in swapped for g, lk in zip(pairs["given"], pairs["likely"])])
        pairs = pd.concat([pairs[first], pairs[~first]], ignore_index=True)
    note = rep.note.replace(_counts_note(rep.suspects, rep.n, rep.share), _counts_note(sus, rep.n, rep.share))
    if diag.kind != "clean" and "WARNING" in note and "train longer" not in diag.text:
        note = note.split("; WARNING")[0]  # the diagnosis found the labels at fault: no "train longer"
    if reference is not None:
        note = note.replace(OUT_OF_FOLD_NOTE, f"scores come from the reference {reference}, which never saw these labels")
    return replace(rep, suspects=sus, pairs=pairs, diagnosis=diag, reference=reference, source=dataset.source,
                   note=note, lookalikes=[list(g) for g in lookalikes.groups] if lookalikes is not None else None)


def reference_probs(predictor, dataset) -> tuple[np.ndarray, list[str]]:
    """N×C probabilities of a reference Predictor over the DATA's classes, matched by name.

    A reference with more classes (a 62-class model on digits) has its probabilities restricted to
    the data's classes and renormalised. Returns (probs, notes)."""
    where = {c: i for i, c in enumerate(predictor.classes)}
    known = [c for c in dataset.classes if c in where]
    if not known:
        raise CharlabError(f"the reference knows none of the data's classes ({', '.join(dataset.classes[:10])} ...)")
    raw = predictor.predict_dataset(dataset)  # N×C_ref
    p = np.zeros((len(dataset), dataset.num_classes), dtype=np.float64)
    for j, c in enumerate(dataset.classes):
        if c in where:
            p[:, j] = raw[:, where[c]]
    total = p.sum(axis=1, keepdims=True)
    p = np.divide(p, total, out=np.full_like(p, 1.0 / dataset.num_classes), where=total > 0)
    notes = []
    if len(predictor.classes) > len(known):
        notes.append(f"the reference's {len(predictor.classes)} classes were restricted to the data's {len(known)}")
    missing = [c for c in dataset.classes if c not in where]
    if missing:
        notes.append(f"the reference does not know {len(missing)} of the data's classes ({', '.join(missing[:10])}); "
                     f"their images can only be read as another class")
    return p, notes


def decisions_from_report(report: dict, min_score: float) -> list[dict]:
    """The relabel decisions (charlab.labels) for the suspects of a `--json` report scoring >= min_score,
    but for look-alike ambiguities (c read as C: a cropped glyph cannot settle them in bulk)."""
    if not isinstance(report, dict) or not isinstance(report.get("suspects"), list):
        raise CharlabError("not a suspects report: it has no 'suspects' list (make one with `charlab suspects --json`)")
    out = []
    for s in report["suspects"]:
        if (s.get("score", 0) < min_score or not s.get("likely") or s.get("likely") == s.get("given")
                or s.get("lookalike")):
            continue
        if not s.get("source_path") or not s.get("hash"):
            raise CharlabError("the report's suspects carry no source_path/hash: make it again with this charlab "
                               "(`charlab suspects --json --limit 0`)")
        out.append({"hash": s["hash"], "path": s["source_path"], "action": "relabel", "label": s["likely"],
                    "given": s["given"]})
    return out
