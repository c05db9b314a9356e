"""Interpretation of a model on one data split (the shape of fastai's `ClassificationInterpretation`).

One object built from a checkpoint (or a model) and a CharDataset split holds the
probabilities, predictions and per-sample losses, and answers the error-analysis questions
with numpy arrays and pandas DataFrames. It never plots: pages draw what it returns.

    interp = Interpretation.from_run("runs/x", splits.test, "test")
    interp.accuracy(), interp.macro_f1(), interp.per_class()
    interp.most_confused(min_count=2)            # true, predicted, count
    interp.misclassified("O", "0")               # the images behind one confusion-matrix cell

`from_run` caches the probabilities per checkpoint and split on disk (in the run directory,
or under charlab's data cache dir (CHARLAB_CACHE_DIR) for a loose checkpoint), keyed by the checkpoint file's content
hash and the dataset's, so the app's Errors page is instant on a second visit and a
retrained checkpoint is never served stale results.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from . import metrics
from .errors import CharlabError, DataError
from .io import atomic_write_bytes

CACHE_VERSION = 1  # bump when the cached arrays change meaning


def dataset_fingerprint(dataset) -> str:
    """Content hash of a CharDataset's images, labels and class names."""
    h = hashlib.blake2b(digest_size=10)
    h.update(json.dumps([list(dataset.classes), list(dataset.images.shape)]).encode())
    h.update(np.ascontiguousarray(dataset.images.numpy()).tobytes())
    h.update(np.ascontiguousarray(dataset.labels.numpy()).tobytes())
    return h.hexdigest()


def align_to_classes(dataset, classes: list[str]) -> tuple[np.ndarray, np.ndarray, str]:
    """Map a dataset's labels onto a model's class order by class NAME.

    Returns (kept sample indices, their labels in `classes` order, a note). Samples of classes the
    model does not know are left out and the note says which; none in common is a DataError.
    """
    labels = dataset.labels.numpy()
    if len(labels) == 0:
        raise DataError(f"no images to evaluate in {getattr(dataset, 'source', '') or 'this split'}")
    if list(dataset.classes) == list(classes):
        return np.arange(len(labels)), labels.astype(np.int64), ""
    from .data.classes import class_lookup

    lut = class_lookup(dataset.classes, classes)
    mapped = lut[labels] if len(labels) else labels.astype(np.int64)
    keep = np.flatnonzero(mapped >= 0)
    unknown = [c for c, j in zip(dataset.classes, lut) if j < 0 and (labels == dataset.classes.index(c)).any()]
    if len(keep) == 0:
        raise DataError(f"the data's classes ({_preview(dataset.classes)}) share none with the model's "
                        f"({_preview(classes)}); is this the right model for this source?")
    note = ""
    if unknown:
        note = (f"evaluated {len(keep)} of {len(labels)} images: the model does not know "
                f"{len(unknown)} of the data's classes ({_preview(unknown)}), whose images were left out")
    return keep, mapped[keep], note


def load_split(predictor, source: str | None, split: str = "test", progress=None, labels: str | None = "model"):
    """Load `split` (train | val | test) of `source` with the checkpoint's preprocessing and split
    seed. Returns (CharDataset, notes). Labels are still in the SOURCE's class order: building an
    Interpretation maps them onto the model's classes by name.

    `labels`: the label override file applied to the source's training data (charlab.labels);
    "model" keeps the one the model was trained with (None for another source)."""
    from .data import load_splits

    if split not in ("train", "val", "test"):
        raise CharlabError(f"split must be train, val or test, got {split!r}")
    cfg = predictor.data_config_for(source)
    if labels != "model":
        cfg.labels = labels
    elif cfg.labels and not os.path.isfile(cfg.labels):  # trained elsewhere with a file not here: raw labels
        cfg.labels = None
    if split == "test" and source is not None and source != predictor.data_config.source:
        # Another source asked for its test split: its own test part when it has one (a sibling
        # testPart1.zip, a test/ folder), otherwise all of it -- e.g. `--source testPart1.zip`.
        from .data import load_source, load_test_source

        ds = load_source(source, cfg, split="test", progress=progress)
        if ds is not None:
            return ds, [f"test split: the test part of {source} ({len(ds)} images)"]
        ds = load_test_source(source, cfg, progress=progress)
        return ds, [f"test split: all of {source}, which has no test part of its own ({len(ds)} images)"]
    splits = load_splits(cfg, progress=progress)
    ds = getattr(splits, split, None)
    if ds is None or len(ds) == 0:
        raise DataError(f"{cfg.source!r} has no {split} images (val_fraction {cfg.val_fraction}); "
                        f"try another --split")
    return ds, [str(n) for n in (getattr(splits, "notes", None) or [])]


def _preview(names, n: int = 8) -> str:
    names = list(names)
    return ", ".join(map(str, names[:n])) + (f", … (+{len(names) - n})" if len(names) > n else "")


@dataclass
class Interpretation:
    probs: np.ndarray  # N×C float32, softmax probabilities in `classes` order
    targets: np.ndarray  # N int64, the given labels in `classes` order
    classes: list[str]
    split_name: str = ""
    dataset: Optional[object] = None  # CharDataset aligned with probs (row i = image i), for galleries
    predictor: Optional[object] = None  # charlab.predict.Predictor, for class examples and saliency
    notes: list[str] = field(default_factory=list)  # e.g. classes left out by align_to_classes
    model_name: str = ""
    from_cache: bool = False
    source_index: Optional[np.ndarray] = None  # row i came from image source_index[i] of the dataset given
    _examples: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.probs = np.asarray(self.probs, dtype=np.float32)
        self.targets = np.asarray(self.targets, dtype=np.int64)
        if self.probs.ndim != 2 or self.probs.shape[0] != len(self.targets) or self.probs.shape[1] != len(self.classes):
            raise ValueError(f"probs {self.probs.shape} do not fit {len(self.targets)} targets × {len(self.classes)} classes")
        self.preds = self.probs.argmax(axis=1) if len(self.probs) else np.zeros(0, np.int64)  # N
        rows = np.arange(len(self.targets))
        self.prob_true = self.probs[rows, self.targets] if len(rows) else np.zeros(0, np.float32)  # N
        self.prob_pred = self.probs[rows, self.preds] if len(rows) else np.zeros(0, np.float32)  # N
        # Per-sample cross-entropy of the (averaged) probabilities, without label smoothing.
        self.losses = -np.log(np.clip(self.prob_true.astype(np.float64), 1e-12, None))  # N

    # --- construction ----------------------------------------------------------------
    @classmethod
    def from_predictor(cls, predictor, dataset, split_name: str = "", progress=None) -> "Interpretation":
        keep, targets, note = align_to_classes(dataset, predictor.classes)
        ds = dataset if len(keep) == len(dataset) else dataset.subset(keep)
        probs = predictor.predict_dataset(ds, progress=progress)
        return cls(probs=probs, targets=targets, classes=list(predictor.classes), split_name=split_name, dataset=ds,
                   predictor=predictor, notes=[note] if note else [], model_name=predictor.name, source_index=keep)

    @classmethod
    def from_model(cls, model, classes: list[str], dataset, split_name: str = "", progress=None) -> "Interpretation":
        """An in-memory model (e.g. `fit(...).model`); the dataset must already be preprocessed for it."""
        from .predict import predictor_from_model

        shape = tuple(dataset.images.shape[-2:])
        return cls.from_predictor(predictor_from_model(model, classes, input_shape=shape), dataset, split_name, progress)

    @classmethod
    def from_run(cls, ref, dataset, split_name: str = "test", cache_dir: str | os.PathLike | None = None, *,
                 predictor=None, device: str = "cpu", progress=None) -> "Interpretation":
        """A run directory / checkpoint file / ensemble ref + a dataset split, cached on disk.

        Pass `predictor` when one is already loaded (the app caches them); otherwise the model is
        loaded only on a cache miss (or later, lazily, for class examples and saliency).
        """
        from .predict import file_fingerprint, resolve_refs, run_dir_of

        paths = resolve_refs(ref) if predictor is None else list(predictor.paths)
        if not paths:  # an in-memory predictor has no file to key a cache on
            return cls.from_predictor(predictor, dataset, split_name, progress)
        ck = hashlib.blake2b("+".join(file_fingerprint(p) for p in paths).encode(), digest_size=8).hexdigest()
        who = hashlib.blake2b("+".join(str(p.resolve()) for p in paths).encode(), digest_size=4).hexdigest()
        ds = dataset_fingerprint(dataset)
        runs = {run_dir_of(p) for p in paths}
        if cache_dir is not None:
            folder = Path(cache_dir)
        elif len(runs) == 1 and None not in runs:
            folder = runs.pop() / "interpret"
        else:
            from .data import cache_dir

            folder = cache_dir() / "interpret"
        split_tag = "".join(ch if ch.isalnum() else "_" for ch in split_name) or "split"
        path = folder / f"{who}-{split_tag}-{ds}-{ck}.npz"

        cached = _read_cache(path)
        if cached is not None:
            keep = cached["keep"]
            sub = dataset if len(keep) == len(dataset) else dataset.subset(keep)
            note = str(cached["note"])
            return cls(probs=cached["probs"], targets=cached["targets"], classes=[str(c) for c in cached["classes"]],
                       split_name=split_name, dataset=sub, predictor=predictor, notes=[note] if note else [],
                       model_name=str(cached["model_name"]), from_cache=True, source_index=keep)._with_ref(ref, device)

        if predictor is None:
            from .predict import load_predictor

            predictor = load_predictor(paths, device=device)
        interp = cls.from_predictor(predictor, dataset, split_name, progress)
        _write_cache(path, interp, prefix=f"{who}-{split_tag}-{ds}-")
        return interp

    def _with_ref(self, ref, device: str) -> "Interpretation":
        self._ref, self._device = ref, device
        return self

    def get_predictor(self):
        """The model(s) behind these results, loaded on first use after a cache hit."""
        if self.predictor is None:
            ref = getattr(self, "_ref", None)
            if ref is None:
                raise CharlabError("this interpretation was built from probabilities alone; no model to run")
            from .predict import load_predictor

            self.predictor = load_predictor(ref, device=getattr(self, "_device", "cpu"))
        return self.predictor

    # --- metrics ---------------------------------------------------------------------
    @property
    def n(self) -> int:
        return len(self.targets)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def accuracy(self) -> float:
        return metrics.accuracy(self.targets, self.preds)

    def topk_accuracy(self, k: int = 5) -> float:
        return metrics.topk_accuracy(self.probs, self.targets, k)

    def present(self) -> np.ndarray:
        """Indices of the classes the data holds (at least one image)."""
        return np.flatnonzero(np.bincount(self.targets, minlength=self.num_classes) > 0)

    def macro_f1(self) -> float:
        """Mean F1 over the classes PRESENT in the data. A class the model predicts but the data
        lacks adds no 0 to the mean; those predictions still lower their true class's recall."""
        _, _, f1, support = metrics.precision_recall_f1(self.confusion_matrix())
        return float(f1[support > 0].mean()) if (support > 0).any() else float("nan")

    def absent_predictions(self) -> int:
        """Images predicted as a class the data does not hold (all of them errors)."""
        absent = np.ones(self.num_classes, bool)
        absent[self.present()] = False
        return int(absent[self.preds].sum()) if self.n else 0

    def restricted(self) -> "Interpretation":
        """The same predictions restricted to the data's classes: the probabilities of absent
        classes are dropped and the rest renormalised (a 62-class model read as a digit model)."""
        keep = np.zeros(self.num_classes, bool)
        keep[self.present()] = True
        p = np.where(keep[None, :], self.probs, 0.0).astype(np.float32)  # N×C
        total = p.sum(axis=1, keepdims=True)
        p = np.divide(p, total, out=np.full_like(p, 1.0 / max(int(keep.sum()), 1)) * keep, where=total > 0)
        out = Interpretation(probs=p, targets=self.targets, classes=self.classes, split_name=self.split_name,
                             dataset=self.dataset, predictor=self.predictor, model_name=self.model_name,
                             notes=self.notes + [f"predictions restricted to the data's {int(keep.sum())} classes"],
                             from_cache=self.from_cache, source_index=self.source_index)
        for k in ("_ref", "_device"):
            if hasattr(self, k):
                setattr(out, k, getattr(self, k))
        return out

    def lookalikes(self):
        """Look-alike groups learned from this split's own soft confusion (charlab.lookalike)."""
        from . import lookalike

        return lookalike.learn(self.probs, self.targets, self.classes,
                               source=f"learned from the confusion on {self.split_name or 'this split'} "
                                      f"({self.n} images)")

    def case_insensitive_accuracy(self, lookalikes=None) -> float:
        """Accuracy when a prediction inside the true class's look-alike group counts as right."""
        from . import lookalike

        la = lookalikes if lookalikes is not None else self.lookalikes()
        return lookalike.grouped_accuracy(self.targets, self.preds, self.classes, la.groups)

    def confusion_matrix(self, normalize: bool | str = False) -> np.ndarray:
        """C×C, rows = true class, columns = predicted. normalize="true": each row sums to 1 (0 for empty rows)."""
        cm = metrics.confusion_matrix(self.targets, self.preds, self.num_classes)
        if not normalize:
            return cm
        if normalize != "true":
            raise ValueError(f"normalize must be False or 'true', got {normalize!r}")
        rows = cm.sum(axis=1, keepdims=True)
        return np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)

    def per_class(self) -> pd.DataFrame:
        """One row per class present in the data, indexed by class index. The mean of its f1
        column is macro_f1(); `predicted` counts the images predicted as that class."""
        cm = self.confusion_matrix()
        precision, recall, f1, support = metrics.precision_recall_f1(cm)
        predicted = cm.sum(axis=0)
        df = pd.DataFrame({"class": self.classes, "precision": precision, "recall": recall, "f1": f1,
                           "support": support.astype(np.int64), "predicted": predicted.astype(np.int64)})
        df.index.name = "class_idx"
        return df[df.support > 0]

    def most_confused(self, min_count: int = 1) -> pd.DataFrame:
        """Off-diagonal cells with at least `min_count` images, most frequent first."""
        cm = self.confusion_matrix()
        off = cm.copy()
        np.fill_diagonal(off, 0)
        t, p = np.nonzero(off >= max(1, int(min_count)))
        counts = off[t, p]
        order = np.lexsort((p, t, -counts))
        t, p, counts = t[order], p[order], counts[order]
        return pd.DataFrame({"true": [self.classes[i] for i in t], "predicted": [self.classes[j] for j in p],
                             "count": counts.astype(np.int64), "true_idx": t.astype(np.int64),
                             "pred_idx": p.astype(np.int64)})

    # --- examples --------------------------------------------------------------------
    def class_index(self, c) -> int:
        """A class index or a class name -> index."""
        if isinstance(c, (int, np.integer)):
            if not 0 <= int(c) < self.num_classes:
                raise CharlabError(f"class index {c} out of range 0..{self.num_classes - 1}")
            return int(c)
        try:
            return self.classes.index(str(c))
        except ValueError:
            raise CharlabError(f"unknown class {c!r}; the model's classes: {_preview(self.classes, 20)}") from None

    def _rows(self, idx: np.ndarray) -> pd.DataFrame:
        paths = getattr(self.dataset, "paths", None) if self.dataset is not None else None
        df = pd.DataFrame({
            "index": idx.astype(np.int64),
            "true": [self.classes[i] for i in self.targets[idx]],
            "predicted": [self.classes[j] for j in self.preds[idx]],
            "prob_pred": self.prob_pred[idx].astype(np.float64),
            "prob_true": self.prob_true[idx].astype(np.float64),
            "loss": self.losses[idx],
        })
        if paths is not None:
            df["path"] = [paths[i] for i in idx]
        return df

    def misclassified(self, true_class, pred_class, sort: str = "loss") -> pd.DataFrame:
        """The images of one confusion-matrix cell (the diagonal gives the correct ones).

        sort="loss": highest loss first; "confidence": most confident (prob_pred) first.
        `index` is the row in `self.dataset`; its length equals confusion_matrix()[t, p].
        """
        t, p = self.class_index(true_class), self.class_index(pred_class)
        idx = np.flatnonzero((self.targets == t) & (self.preds == p))
        df = self._rows(idx)
        if sort not in ("loss", "confidence"):
            raise ValueError(f"sort must be 'loss' or 'confidence', got {sort!r}")
        key = "loss" if sort == "loss" else "prob_pred"
        return df.sort_values([key, "index"], ascending=[False, True], kind="stable").reset_index(drop=True)

    def top_losses(self, k: int = 16, errors_only: bool = False) -> pd.DataFrame:
        idx = np.flatnonzero(self.targets != self.preds) if errors_only else np.arange(self.n)
        order = idx[np.argsort(-self.losses[idx], kind="stable")][: max(0, int(k))]
        return self._rows(order).reset_index(drop=True)

    def image(self, i: int) -> np.ndarray:
        """Row i's image as the model saw it: H×W uint8, ink bright on dark."""
        if self.dataset is None:
            raise CharlabError("no images: this interpretation was built without a dataset")
        return self.dataset.images[int(i), 0].numpy()

    def class_example(self, class_idx, reference_dataset=None) -> Optional[np.ndarray]:
        """A representative image (H×W uint8) of a class, e.g. to show beside a wrong prediction.

        From `reference_dataset` (usually the training split) when given, else from this split:
        the correctly classified image the model is most confident about; without a model to
        score it, the class medoid (the image nearest, in pixels, to all others of its class).
        None when the class has no image.
        """
        c = self.class_index(class_idx)
        key = (id(reference_dataset), c)
        if key in self._examples:
            return self._examples[key][1]
        if reference_dataset is None:
            if self.dataset is None:
                raise CharlabError("no images: pass reference_dataset")
            idx = np.flatnonzero(self.targets == c)
            best = None
            if len(idx):
                correct = idx[self.preds[idx] == c]
                pool = correct if len(correct) else idx
                best = self.image(pool[np.argmax(self.prob_true[pool])])
        else:
            best = self._reference_example(reference_dataset, c)
        # Holding the reference keeps its id() from being reused by another dataset.
        self._examples[key] = (reference_dataset, best)
        return best

    def _reference_example(self, ref, c: int) -> Optional[np.ndarray]:
        keep, mapped, _ = align_to_classes(ref, self.classes)
        idx = keep[mapped == c]
        if not len(idx):
            return None
        imgs = ref.images[idx]  # n×1×H×W uint8
        try:
            pred = self.get_predictor()
        except CharlabError:
            pred = None
        if pred is not None and tuple(imgs.shape[-2:]) == tuple(pred.input_shape):
            p = pred.probs(imgs, side=ref.side[idx] if ref.side is not None else None)  # n×C
            correct = p.argmax(axis=1) == c
            score = p[:, c] + correct  # correct ones first, then by confidence
            return imgs[int(np.argmax(score)), 0].numpy()
        return medoid(imgs[:, 0].numpy())

    def saliency(self, i: int, kind: str = "grad_cam", class_idx=None) -> np.ndarray:
        """Grad-CAM / input-gradient map (H×W in [0,1]) of row i, for class_idx (default: predicted)."""
        c = int(self.preds[int(i)]) if class_idx is None else self.class_index(class_idx)
        side = self.dataset.side[int(i)].numpy() if self.dataset is not None and self.dataset.side is not None else None
        return self.get_predictor().saliency(self.image(i), kind=kind, class_idx=c, side=side)

    # --- summaries -------------------------------------------------------------------
    def summary(self) -> dict:
        return {
            "model": self.model_name,
            "split": self.split_name,
            "n": self.n,
            "num_classes": self.num_classes,
            "accuracy": self.accuracy(),
            "top5": self.topk_accuracy(5),
            "macro_f1": self.macro_f1(),
            "errors": int((self.targets != self.preds).sum()),
            "classes_present": int(len(self.present())),
            "absent_predictions": self.absent_predictions(),
            "mean_loss": float(self.losses.mean()) if self.n else float("nan"),
            "notes": list(self.notes),
            "cached": self.from_cache,
        }

    def report(self, top_pairs: int = 20) -> dict:
        """summary() + per_class + most_confused as JSON-able lists (what `charlab eval --json` prints)."""
        per_class = self.per_class().reset_index(drop=True)
        pairs = self.most_confused().head(top_pairs)[["true", "predicted", "count"]]
        return {**self.summary(),
                "per_class": [_jsonable(r) for r in per_class.to_dict("records")],
                "most_confused": [_jsonable(r) for r in pairs.to_dict("records")]}


def medoid(images: np.ndarray) -> np.ndarray:
    """n×H×W -> the image with the smallest summed distance to the others (pixel L2)."""
    flat = images.reshape(len(images), -1).astype(np.float32) / 255.0  # n×D
    sq = (flat ** 2).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * flat @ flat.T, 0)  # n×n
    return images[int(np.sqrt(d2).sum(1).argmin())]


def _jsonable(row: dict) -> dict:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}


def _read_cache(path: Path) -> Optional[dict]:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        if int(data.get("version", -1)) != CACHE_VERSION:
            return None
        data["note"] = data["note"].item() if data["note"].shape == () else ""
        data["model_name"] = data["model_name"].item()
        return data
    except Exception:  # a corrupt or foreign file is only a cache miss
        return None


def _write_cache(path: Path, interp: Interpretation, prefix: str) -> None:
    buf = io.BytesIO()
    np.savez(buf, version=np.array(CACHE_VERSION), probs=interp.probs, targets=interp.targets,
             classes=np.array(interp.classes, dtype=str), keep=np.asarray(interp.source_index, dtype=np.int64),
             note=np.array(interp.notes[0] if interp.notes else ""), model_name=np.array(interp.model_name))
    try:
        atomic_write_bytes(path, buf.getvalue())
        # The same model files and data with another checkpoint hash: a stale result, drop it.
        for old in path.parent.glob(prefix + "*.npz"):
            if old != path:
                old.unlink(missing_ok=True)
    except (OSError, CharlabError):
        pass  # a read-only run directory or a full disk only costs the cache, not the result
