"""One raw image (a canvas drawing, a file) -> the tensor the model sees -> top-k.

A `Predictor` holds one model, or several with the same classes (an ensemble: their
softmax probabilities are averaged), together with the checkpoint's own preprocessing,
so an image is always prepared exactly as the training images were.

    p = load_predictor("runs/2024…-kaggle_cnn-ab12")        # a run directory -> its best.pt
    p = load_predictor("checkpoints/default.pt")
    p = load_predictor("runs/a+runs/b")                     # ensemble of two runs
    p = load_predictor("ens.pt")                            # a file holding an ensemble (checkpoint.save_ensemble)
    p.predict_images([Image.open("x.png")], top_k=5)        # [[("A", 0.91), ("4", 0.03), …]]

The app caches one Predictor per checkpoint with `st.cache_resource` and shares it across
sessions, so nothing here mutates the models after loading (saliency included).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .config import DataConfig, TrainConfig
from .cpu import bulk_threads
from .data.classes import class_lookup
from .errors import CheckpointError, DataError

Ref = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]
Progress = Callable[[int, int, str], None]

ENSEMBLE_SEP = "+"


def resolve_checkpoint(ref: str | os.PathLike) -> Path:
    """A run directory -> its best.pt (last.pt if no best yet); a checkpoint file -> itself."""
    p = Path(ref).expanduser()
    if not p.exists():
        from .errors import RunError
        from .runs import resolve_run

        try:
            p = resolve_run(str(ref))  # a run id (or a unique part of one) under runs/, as `runs list` prints it
        except RunError as e:
            raise CheckpointError(f"no run directory or checkpoint file at {ref} ({e})") from None
    if p.is_dir():
        from .runs import RunDir

        found = RunDir(p).checkpoint()
        if found is not None:
            return found
        raise CheckpointError(f"run directory {p} holds no checkpoint yet (no best.pt or last.pt); "
                              "has its first epoch finished?")
    return p


def resolve_refs(ref: Ref) -> list[Path]:
    """"a.pt", "runs/x", "a.pt+b.pt" or a list of those -> checkpoint files (one per member)."""
    if isinstance(ref, (str, os.PathLike)):
        s = os.fspath(ref)
        # A path that exists wins over splitting, in case a file name itself holds a '+'.
        parts = [s] if Path(s).exists() else [x for x in s.split(ENSEMBLE_SEP) if x.strip()]
    else:
        parts = [os.fspath(r) for r in ref]
    if not parts:
        raise CheckpointError("no checkpoint given")
    return [resolve_checkpoint(x.strip()) for x in parts]


def run_dir_of(checkpoint: str | os.PathLike) -> Optional[Path]:
    """The run directory a checkpoint lives in, or None for a loose file such as checkpoints/default.pt."""
    from .runs import RunDir

    parent = Path(checkpoint).resolve().parent
    return parent if RunDir(parent).is_run() else None


_HASH_MEMO: dict[tuple, str] = {}  # (path, size, mtime_ns) -> content hash; values never go stale


def file_fingerprint(path: str | os.PathLike) -> str:
    """Content hash of a file (size + blake2b of its first 64 MiB), memoised on (path, size, mtime)."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _HASH_MEMO:
        h = hashlib.blake2b(digest_size=10)
        h.update(str(st.st_size).encode())
        with open(path, "rb") as f:
            remaining = 64 << 20
            while remaining > 0 and (chunk := f.read(min(remaining, 1 << 20))):
                h.update(chunk)
                remaining -= len(chunk)
        _HASH_MEMO[key] = h.hexdigest()
    return _HASH_MEMO[key]


@dataclass(frozen=True)
class Explanation:
    """One image through the model (Predictor.explain)."""

    image: np.ndarray  # H×W uint8, ink bright on dark: what the model saw
    probs: np.ndarray  # C probabilities in Predictor.classes order (averaged over members)
    top: list[tuple[str, float]]  # the top-k (label, probability), most likely first
    cam: np.ndarray  # H×W in [0,1]: Grad-CAM of the top class
    class_idx: int  # index of the top class
    side: Optional[np.ndarray] = None  # float32 G: the side vector the model read (charlab.data.geometry), if any


_BULK_LOCK = threading.Lock()  # guards Predictor._bulk (module-level: a Predictor stays picklable)


@dataclass
class Predictor:
    """Model(s) + classes + preprocessing. Stateless after construction: safe to share."""

    models: list[nn.Module]  # eval mode, on `device`; one per ensemble member
    classes: list[str]  # index order of the returned probabilities
    data_config: DataConfig  # the checkpoint's preprocessing (source and split fields are irrelevant here)
    input_shape: tuple[int, int]  # H, W the model was trained on
    config: TrainConfig  # the (first) member's full training config
    paths: list[Path] = field(default_factory=list)  # the checkpoint files (one may hold several members)
    device: torch.device = torch.device("cpu")
    # Per member: index that reorders its class axis to `classes`, or None when already aligned.
    perms: list[Optional[torch.Tensor]] = field(default_factory=list)
    # Look-alike groups the (first) checkpoint stores (charlab.lookalike); None for older ones.
    lookalikes: Optional[object] = None
    # (ids of `models`, their inference copies): what `probs` runs, built at its first call
    _bulk: Optional[tuple] = field(default=None, repr=False, compare=False)

    @property
    def model(self) -> nn.Module:
        """The first member; what saliency uses when one model is needed."""
        return self.models[0]

    def bulk_models(self) -> list[nn.Module]:
        """The members as `charlab.models.inference_copy`s (BatchNorm folded, channels_last): what
        `probs` runs. The members themselves stay untouched for saliency."""
        from .models import inference_copy

        key = tuple(map(id, self.models))
        with _BULK_LOCK:  # the app shares one Predictor between sessions: build the copies once, so a
            # hook put on them (health.model_features) sits on the copies every later call runs
            if self._bulk is None or self._bulk[0] != key:
                self._bulk = (key, [inference_copy(m) for m in self.models])
            return self._bulk[1]

    @property
    def is_ensemble(self) -> bool:
        return len(self.models) > 1

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def name(self) -> str:
        return ENSEMBLE_SEP.join(_short_name(p) for p in self.paths) or "model"

    def fingerprint(self) -> str:
        """Changes whenever any member's checkpoint file changes (the interpretation cache key)."""
        return "-".join(file_fingerprint(p) for p in self.paths)[:64] if self.paths else "nofile"

    def data_config_for(self, source: str | None = None) -> DataConfig:
        """The checkpoint's preprocessing (and split seed) applied to `source` (default: its own).

        The same source keeps its test_source and val split, so `split="test"` or `"val"` is the
        very split the model was evaluated on in training; another source uses its own test split.
        The training split comes as published: its stroke redrawings (`strokes`) were extra training
        samples, and making them again costs minutes on a cold cache for images nobody inspects.
        """
        if source is None or source == self.data_config.source:
            return replace(self.data_config, strokes=0)
        # label overrides are keyed by the training source's own paths: they do not follow to another source
        return replace(self.data_config, source=source, test_source=None, labels=None, strokes=0)

    @property
    def side_inputs(self) -> Optional[str]:
        """The side-vector kind the model(s) read beside the image (charlab.data.geometry), or None."""
        return getattr(self.data_config, "side_inputs", None) or None

    @property
    def side_optional(self) -> bool:
        """Whether its side-input models also read images that come without a page (DataConfig.side_dropout)."""
        from .models import side_optional

        return bool(self.side_inputs) and all(side_optional(m) for m in self.models)

    def read_side(self, side, page: bool = True):
        """The side vector(s) to read, or None. `page=False` says the image's frame is no page (a
        photo, framed at will): a model whose side vector is optional then reads the pixels alone;
        one that needs the vector still reads the frame's."""
        return None if not self.side_inputs or (not page and self.side_optional) else side

    # --- images -> model input -------------------------------------------------------
    def prepare(self, pil_image) -> np.ndarray:
        """The H×W uint8 image (ink bright on dark) the model actually sees: S×S, or wide for digit sums."""
        return self.prepare_side(pil_image)[0]

    def prepare_side(self, pil_image) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """(the image the model sees, the float32 G side vector of the ink on this image's own
        frame, which is its page: the Draw canvas, a file, a photo; None for an image-only model)."""
        from .data.preprocess import preprocess_image_side

        arr, side = preprocess_image_side(pil_image, self.data_config, tuple(self.input_shape))
        arr = np.asarray(arr)
        if arr.shape != tuple(self.input_shape):
            raise DataError(f"preprocessing gave a {arr.shape} image but the model expects {tuple(self.input_shape)}")
        return arr, side

    def prepare_batch(self, pil_images: Sequence) -> torch.Tensor:
        """PIL images -> float32 N×1×H×W in [0, 1] (charlab's model input scale)."""
        return self.prepare_inputs(pil_images)[0]

    def prepare_inputs(self, pil_images: Sequence) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """PIL images -> (float32 N×1×H×W in [0, 1], float32 N×G side vectors or None)."""
        done = [self.prepare_side(im) for im in pil_images]
        x = torch.from_numpy(np.stack([a for a, _ in done])).unsqueeze(1).float().div_(255.0)  # N×1×H×W
        side = torch.from_numpy(np.stack([s for _, s in done])) if self.side_inputs else None  # N×G
        return x, side

    # --- model input -> probabilities ------------------------------------------------
    def probs(self, batch, batch_size: int = 512, progress: Progress | None = None,
              side=None) -> np.ndarray:
        """float N×1×H×W in [0,1] (uint8 is scaled) -> N×C probabilities, averaged over members.
        A side-input model also needs `side`, float N×G (`prepare_inputs`, `CharDataset.side`)."""
        side = self._check_side(side)
        x = torch.as_tensor(batch)
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        if x.dim() == 3:
            x = x.unsqueeze(1)  # N×H×W -> N×1×H×W
        n = len(x)
        out = np.empty((n, self.num_classes), dtype=np.float32)
        with torch.inference_mode(), bulk_threads(n):
            for start in range(0, n, batch_size):
                xb = x[start:start + batch_size].to(self.device, torch.float32)
                extra = () if side is None else (side[start:start + batch_size].to(self.device),)  # B×G
                acc = None
                for model, perm in zip(self.bulk_models(), self.perms):
                    p = torch.softmax(model(xb, *extra).float(), dim=1)  # B×C
                    if perm is not None:
                        p = p[:, perm]
                    acc = p if acc is None else acc + p
                out[start:start + len(xb)] = (acc / len(self.models)).cpu().numpy()
                if progress is not None:
                    progress(min(start + batch_size, n), n, "predicting")
        return out

    def predict_dataset(self, dataset, batch_size: int = 512, progress: Progress | None = None) -> np.ndarray:
        """A CharDataset (uint8 images) -> N×C probabilities."""
        self.check_shape(tuple(dataset.images.shape[-2:]))
        return self.probs(dataset.images, batch_size=batch_size, progress=progress, side=dataset.side)

    def _check_side(self, side) -> Optional[torch.Tensor]:
        """The side vectors as a float tensor, or a DataError saying what is missing."""
        if not self.side_inputs:
            return None  # an image-only model: a dataset's side vectors are simply not used
        if side is None and self.side_optional:
            return None  # images without a page (MNIST, CSV, synthetic): the model reads the image alone
        if side is None:
            raise DataError(f"this model also reads the ink's size and position on its page (side inputs "
                            f"{self.side_inputs!r}), and these images come without them: load the data with the "
                            "checkpoint's preprocessing (Predictor.data_config_for(source)) or pass raw images "
                            "(predict_images)")
        return torch.as_tensor(side, dtype=torch.float32).reshape(len(side), -1)  # N×G

    def bound(self, model: nn.Module, side) -> nn.Module:
        """`model` callable as model(x) with the side vector(s) `side` (1×G or N×G) bound, for
        image-only code (Grad-CAM); the model itself when it reads no side inputs."""
        from .models import BoundSide

        side = self._check_side(side)
        return model if side is None else BoundSide(model, side.to(self.device))

    def check_shape(self, hw: tuple[int, int]) -> None:
        if tuple(hw) != tuple(self.input_shape):
            raise DataError(f"images are {hw[0]}×{hw[1]} but the model was trained on "
                            f"{self.input_shape[0]}×{self.input_shape[1]}; load the data with the "
                            f"checkpoint's preprocessing (Predictor.data_config_for(source))")

    def topk(self, probs: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
        k = max(1, min(int(k), self.num_classes))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]  # N×k
        return [[(self.classes[j], float(row[j])) for j in idx] for row, idx in zip(probs, order)]

    def predict_images(self, pil_images: Sequence, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """Raw PIL images (any size, mode or polarity) -> per image the top-k (label, prob)."""
        if not len(pil_images):
            return []
        x, side = self.prepare_inputs(pil_images)
        return self.topk(self.probs(x, side=side), top_k)

    # --- one image, everything the Draw page shows --------------------------------------
    def explain(self, image, top_k: int = 5, page: bool = True) -> "Explanation":
        """A raw image -> what the model saw, its probabilities, top-k and Grad-CAM of the top
        class, from ONE preparation and one forward pass per member (the Grad-CAM gradients
        come from that same pass). `page=False` says the image's frame is no page (a photo,
        framed at will): a model whose side vector is optional then reads the pixels alone."""
        from . import saliency

        seen, side = self.prepare_side(image)  # H×W uint8, G float32 or None
        side = self.read_side(side, page)
        x = saliency.as_input(seen).to(self.device)  # 1×1×H×W float in [0,1]
        side = None if side is None else side[None]  # 1×G
        with contextlib.ExitStack() as stack:
            passes = [stack.enter_context(saliency.cam_forward(self.bound(m, side), x)) for m in self.models]
            probs = None
            for (logits, _), perm in zip(passes, self.perms):
                p = torch.softmax(logits.float(), dim=1)[0]  # C, in that member's class order
                p = p if perm is None else p[perm]
                probs = p if probs is None else probs + p
            probs = (probs / len(self.models)).cpu().numpy()  # C
            c = int(probs.argmax())
            maps = [cam(c if perm is None else int(perm[c])) for (_, cam), perm in zip(passes, self.perms)]
        m = np.mean(maps, axis=0)
        return Explanation(image=seen, probs=probs, top=self.topk(probs[None], top_k)[0],
                           cam=m / m.max() if m.max() > 0 else m, class_idx=c,
                           side=None if side is None else side[0])

    # --- saliency, averaged over members ---------------------------------------------
    def saliency(self, image, kind: str = "grad_cam", class_idx: int | None = None, side=None) -> np.ndarray:
        """Grad-CAM or input-gradient map (H×W in [0,1]) of a prepared S×S image, for `class_idx`
        (default: the predicted class), averaged over ensemble members. A side-input model also
        needs that image's side vector (`side`, G or 1×G)."""
        from . import saliency

        fn = saliency.SALIENCY.get(kind).fn  # an unknown kind fails listing the valid ones
        x = saliency.as_input(image)
        side = None if side is None else np.asarray(side, np.float32).reshape(1, -1)  # 1×G
        if class_idx is None:
            class_idx = int(self.probs(x, side=side).argmax(axis=1)[0])
        maps = []
        for model, perm in zip(self.models, self.perms):
            c = class_idx if perm is None else int(perm[class_idx])  # that member's own index of the class
            maps.append(fn(self.bound(model, side), x, class_idx=c))
        m = np.mean(maps, axis=0)
        return m / m.max() if m.max() > 0 else m


def _short_name(p: Path) -> str:
    run = run_dir_of(p)
    return f"{run.name}/{p.name}" if run is not None else p.name


def load_predictor(ref: Ref, device: str | torch.device = "cpu") -> Predictor:
    """A run directory, checkpoint file, "a+b" ensemble string or list of those -> Predictor."""
    from . import lookalike
    from .checkpoint import load_members

    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    paths = resolve_refs(ref)
    ckpts, names = [], []  # one per model: a file that holds an ensemble (save_ensemble) adds all its members
    for p in paths:
        members = load_members(p, map_location=device)
        ckpts += members
        names += [str(p)] if len(members) == 1 else [f"{p} (member {k + 1})" for k in range(len(members))]
    first = ckpts[0]
    classes = list(first.classes)
    perms: list[Optional[torch.Tensor]] = []
    for p, ck in zip(names, ckpts):
        if list(ck.classes) == classes:
            perms.append(None)
            continue
        if sorted(ck.classes) != sorted(classes):
            extra = sorted(set(ck.classes) ^ set(classes))
            raise CheckpointError(f"ensemble members must share their classes: {p} differs from {names[0]} "
                                  f"in {', '.join(extra[:10])}{' …' if len(extra) > 10 else ''}")
        perms.append(torch.from_numpy(class_lookup(classes, ck.classes)).to(device))
        # Same classes in another order: reorder that member's outputs rather than refuse.
    for p, ck in zip(names[1:], ckpts[1:]):
        a, b = first.config.data.preprocessing(), ck.config.data.preprocessing()  # members must agree
        if a != b or tuple(ck.input_shape) != tuple(first.input_shape):
            diff = {f: (a[f], b[f]) for f in a if a[f] != b[f]}
            raise CheckpointError(f"ensemble members must preprocess images alike: {p} differs from "
                                  f"{names[0]} in {diff or {'input_shape': (first.input_shape, ck.input_shape)}}")
    return Predictor(models=[ck.model for ck in ckpts], classes=classes, data_config=first.config.data,
                     input_shape=tuple(first.input_shape), config=first.config, paths=paths,
                     device=device, perms=perms, lookalikes=lookalike.for_checkpoint(first.state, classes))


def predictor_from_model(model: nn.Module, classes: list[str], data_config: DataConfig | None = None,
                         input_shape: tuple[int, int] | None = None, config: TrainConfig | None = None) -> Predictor:
    """Wrap an in-memory model (e.g. `fit(...).model`) without a checkpoint file."""
    config = config or TrainConfig(data=data_config or DataConfig())
    data_config = data_config or config.data
    input_shape = tuple(input_shape or (data_config.image_size, data_config.image_size))
    device = next(model.parameters()).device
    if model.training:
        model.eval()  # a fresh model from fit(); a model we never hand out, so no one shares its state yet
    return Predictor(models=[model], classes=list(classes), data_config=data_config, input_shape=input_shape,
                     config=config, paths=[], device=device, perms=[None])
