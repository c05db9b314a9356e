"""Typed configs. Every choice is a plain value or a registry key, so a config is
JSON-serializable, stored inside every run and checkpoint, and rebuilds the model alone.

`to_dict` / `from_dict` round-trip; `from_dict` ignores unknown keys (older or newer
checkpoints still load) and `validate` explains bad values in words.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Optional

from .errors import CharlabError
from .registry import Registry


# The DataConfig fields that change what a model sees (an image's pixels): the disk cache keys on
# them, ensemble members must agree on them. The split and sampling fields do not belong here.
PREPROCESS_FIELDS = ("image_size", "grayscale", "invert", "crop", "margin", "threshold", "stroke_norm",
                     "side_inputs")


@dataclass
class DataConfig:
    source: str = "synthetic"  # source string: synthetic[:opts], a folder/zip/csv path, mnist:DIR, emnist:DIR[:split], digitsum:...
    test_source: Optional[str] = None  # explicit test source; None = the source's own test split if it has one
    image_size: int = 28  # S: images are S×S (28 like MNIST; 32 and 64 selectable)
    grayscale: bool = True  # convert colour to luminance before anything else
    invert: str = "auto"  # auto: detect dark-on-light and invert to MNIST's white-on-black; "yes"/"no" force it
    crop: bool = True  # crop to the ink's bounding box before padding
    margin: float = 0.15  # padding around the ink, as a fraction of the padded square's side
    threshold: Optional[float] = None  # binarise at this level in [0, 1]; None keeps grey levels
    val_fraction: float = 0.15  # stratified validation share of the training data
    seed: int = 0  # seed of the split (and of generated sources)
    labels: Optional[str] = None  # label override file (charlab.labels) applied to the training data; None = none
    strokes: int = 0  # training split only: add K redrawings of each image as constant-width Draw-canvas pen strokes (charlab.data.strokes); 0 = off
    stroke_pens: tuple = (10.0, 32.0)  # pen widths of those redrawings, uniform, in canvas pixels (the Draw page's pen: 6-40, default 20)
    stroke_norm: Optional[float] = None  # redraw every image's ink as its skeleton with this pen width (fraction of the padded square's side; 0.08 ~ 2 px at 28) so tablet ink and canvas strokes look alike; None keeps the ink as drawn
    side_inputs: Optional[str] = None  # also keep the ink's box on its page from before the crop (a key of charlab.data.geometry.SIDE_INPUTS: "box") and feed it to the model's head beside the image; None = the image alone
    side_dropout: float = 0.0  # with side_inputs: share of training images whose side vector is hidden from the head (modality dropout), so the model also reads images that come without a page (MNIST, CSV rows, synthetic glyphs); 0 = every image must come with its page

    def preprocessing(self) -> dict:
        """{field: value} of PREPROCESS_FIELDS."""
        return {f: getattr(self, f) for f in PREPROCESS_FIELDS}

    def validate(self) -> None:
        if not 0 <= self.strokes <= 8:
            raise CharlabError(f"strokes (redrawings per training image) must be between 0 and 8, got {self.strokes}")
        if self.side_inputs is not None:
            from .data.geometry import side_kind

            side_kind(self.side_inputs)  # an unknown kind fails listing the valid ones
        if not 0 <= self.side_dropout < 1:
            raise CharlabError(f"side_dropout must be a share in [0, 1), got {self.side_dropout}")
        if self.stroke_norm is not None and not 0 < self.stroke_norm < 0.5:
            raise CharlabError(f"stroke_norm must be a pen width in (0, 0.5) of the image side (or None), got {self.stroke_norm}")
        if len(self.stroke_pens) != 2 or not 0 < self.stroke_pens[0] <= self.stroke_pens[1]:
            raise CharlabError(f"stroke_pens must be a (low, high) pair of positive widths, got {self.stroke_pens}")
        if self.image_size not in (28, 32, 64) and not (8 <= self.image_size <= 128):
            raise CharlabError(f"image_size must be between 8 and 128 (28, 32 or 64 usual), got {self.image_size}")
        if self.invert not in ("auto", "yes", "no"):
            raise CharlabError(f"invert must be auto, yes or no, got {self.invert!r}")
        if not 0 <= self.margin < 0.5:
            raise CharlabError(f"margin must be in [0, 0.5), got {self.margin}")
        if self.threshold is not None and not 0 < self.threshold < 1:
            raise CharlabError(f"threshold must be in (0, 1), got {self.threshold}")
        if not 0 <= self.val_fraction < 1:
            raise CharlabError(f"val_fraction must be in [0, 1), got {self.val_fraction}")


@dataclass
class AugmentConfig:
    """Batched augmentation: each op has a strength and a probability (see charlab.augment).

    Ranges are (low, high) pairs sampled uniformly per image; a zero range or p=0 disables the op.
    """

    preset: str = "none"  # the preset these values came from ("custom" once edited); informational
    rotate: tuple = (0.0, 0.0)  # degrees, e.g. (-15, 25) as in the 36-class report
    rotate_p: float = 0.0  # probability of rotating an image
    shear_x: tuple = (0.0, 0.0)  # horizontal shear factor range, e.g. (-0.3, 0.3)
    shear_y: tuple = (0.0, 0.0)  # vertical shear factor range
    shear_p: float = 0.0  # probability of shearing
    scale: tuple = (1.0, 1.0)  # zoom factor range, e.g. (0.8, 1.2)
    scale_p: float = 0.0  # probability of zooming
    shift: float = 0.0  # max translation as a fraction of the side, e.g. 0.1
    shift_p: float = 0.0  # probability of shifting
    perspective: float = 0.0  # corner displacement as a fraction of the side
    perspective_p: float = 0.0  # probability of a perspective warp
    elastic_alpha: float = 0.0  # elastic displacement magnitude in pixels (Simard et al. 2003)
    elastic_sigma: float = 4.0  # smoothness of the elastic field in pixels
    elastic_p: float = 0.0  # probability of an elastic distortion
    stroke: tuple = (0.0, 0.0)  # stroke width change in pixels: <0 thins, >0 thickens
    stroke_p: float = 0.0  # probability of changing the stroke width
    blur_sigma: tuple = (0.0, 0.0)  # Gaussian blur sigma range in pixels
    blur_p: float = 0.0  # probability of blurring
    noise_std: float = 0.0  # Gaussian pixel noise std on the [0, 1] scale
    noise_p: float = 0.0  # probability of adding noise
    erase_frac: tuple = (0.0, 0.0)  # random-erasing rectangle area as a fraction of the image
    erase_p: float = 0.0  # probability of erasing a rectangle

    def is_identity(self) -> bool:
        probs = [getattr(self, f.name) for f in fields(self) if f.name.endswith("_p")]
        return all(p == 0 for p in probs)


# Named augmentation presets: plain AugmentConfig values, so they live here beside the class and
# TrainConfig's default (`strong`) needs no import of charlab.augment (which applies them, in torch).
AUGMENT_PRESETS: Registry = Registry("augmentation preset")


def get_preset(name: str) -> AugmentConfig:
    """A fresh AugmentConfig for a named preset; unknown names list the valid ones."""
    cfg = AUGMENT_PRESETS.get(name)()
    return dataclasses.replace(cfg, preset=name)


def list_presets() -> list[str]:
    return AUGMENT_PRESETS.names()


@AUGMENT_PRESETS.register("none")
def _preset_none() -> AugmentConfig:
    """The exact identity: augment_batch returns its input unchanged."""
    return AugmentConfig()


@AUGMENT_PRESETS.register("light")
def _preset_light() -> AugmentConfig:
    """Small pose and pen changes that keep every sample looking like the validation data."""
    return AugmentConfig(
        rotate=(-8.0, 8.0), rotate_p=0.5,
        shear_x=(-0.1, 0.1), shear_y=(-0.05, 0.05), shear_p=0.3,
        scale=(0.92, 1.08), scale_p=0.5,
        shift=0.05, shift_p=0.5,
        elastic_alpha=0.6, elastic_sigma=4.0, elastic_p=0.2,
        stroke=(-0.3, 0.5), stroke_p=0.3,
        blur_sigma=(0.3, 0.6), blur_p=0.1,
    )


@AUGMENT_PRESETS.register("strong")
def _preset_strong() -> AugmentConfig:
    """Everything at once, still readable: the report that previewed its grids found more hurts."""
    return AugmentConfig(
        rotate=(-15.0, 15.0), rotate_p=0.7,
        shear_x=(-0.3, 0.3), shear_y=(-0.1, 0.1), shear_p=0.5,
        scale=(0.85, 1.1), scale_p=0.5,
        shift=0.08, shift_p=0.5,
        perspective=0.1, perspective_p=0.3,
        elastic_alpha=1.0, elastic_sigma=4.0, elastic_p=0.5,
        stroke=(-0.5, 0.7), stroke_p=0.5,
        blur_sigma=(0.3, 0.7), blur_p=0.3,
        noise_std=0.05, noise_p=0.3,
        erase_frac=(0.02, 0.05), erase_p=0.25,
    )


@AUGMENT_PRESETS.register("report36")
def _preset_report36() -> AugmentConfig:
    """The 36-class report's oversampling copies: rotation +25°/−15° and shear ±0.3, every copy."""
    return AugmentConfig(rotate=(-15.0, 25.0), rotate_p=1.0, shear_x=(-0.3, 0.3), shear_p=1.0)


@AUGMENT_PRESETS.register("chars74k_report")
def _preset_chars74k_report() -> AugmentConfig:
    """The Chars74K report's generator: shear 0.1 and a little rotation."""
    return AugmentConfig(rotate=(-10.0, 10.0), rotate_p=1.0, shear_x=(-0.1, 0.1), shear_p=1.0)



@dataclass
class ModelConfig:
    name: str = "charnet"  # key in the model registry (charlab.models.list_models()); charnet: the default recipe's
    kwargs: dict = field(default_factory=dict)  # extra builder options, e.g. {"activation": "mish", "temperature": 5}
    pretrained: Optional[str] = None  # path to a local ImageNet weights file; never fetched from the network


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)  # where the images come from and how they are preprocessed
    augment: AugmentConfig = field(default_factory=lambda: get_preset("strong"))  # batch augmentation before each forward pass; the default recipe's
    model: ModelConfig = field(default_factory=ModelConfig)  # architecture and its options
    epochs: int = 40  # maximum epochs; early stopping may end sooner (40: the default recipe, ~2-4 min on 2 cores for Chars74K)
    batch_size: int = 64  # images per optimisation step (64: more steps per epoch on small sets like Chars74K's 2,480)
    optimizer: str = "adamw"  # a key of charlab.optim.OPTIMIZERS (adamw, adam, sgd)
    lr: float = 3e-3  # peak learning rate
    weight_decay: float = 0.05  # decoupled for AdamW (0.05: the default recipe's), L2 for Adam/SGD (use ~5e-4 there)
    momentum: float = 0.9  # SGD only
    schedule: str = "onecycle"  # a key of charlab.optim.SCHEDULES (onecycle, cosine, constant), stepped per batch
    label_smoothing: float = 0.1  # cross-entropy label smoothing
    balance: str = "none"  # a key of charlab.balance.BALANCE_STRATEGIES (none, oversample, sampler, loss)
    balance_target: Optional[int] = None  # oversample target per class; None = the median class count
    balance_weights: str = "inverse"  # loss balancing weights, a key of charlab.balance.CLASS_WEIGHTS: inverse | effective (Cui et al. 2019)
    monitor: str = "val_acc"  # metric early stopping and best.pt follow (validation split only)
    mode: str = "max"  # max | min for the monitored metric
    patience: int = 10  # epochs without improvement before stopping; 0 disables early stopping
    min_delta: float = 0.0  # smallest change that counts as an improvement
    seed: int = 0  # seeds weights, batch order and augmentation
    init_from: Optional[str] = None  # checkpoint to start from; its head is replaced when classes differ
    freeze_body: bool = False  # with init_from: train only the new head
    teacher: Optional[str] = None  # checkpoint (one model or an ensemble file) whose softened predictions the student also learns from; None = no distillation
    distill_weight: float = 0.5  # with teacher: share of the loss that follows the teacher (the rest is the label-smoothed cross-entropy)
    distill_temperature: float = 4.0  # with teacher: softmax temperature T of both sides of the distillation term (Hinton et al. 2015)
    max_minutes: Optional[float] = None  # wall-clock budget; training stops cleanly after the epoch that crosses it
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool = False  # bfloat16 autocast for the forward passes (a GPU's tensor cores); off: CPUs without bf16 units run it slower
    num_workers: int = 0  # DataLoader workers; batches are tensor slices, so 0 is fastest here
    limit_batches: int = 0  # debug: train on at most this many batches per epoch (0 = all)
    overfit_batch: bool = False  # debug (Karpathy's "overfit one batch"): the same first batch every epoch, unshuffled, unaugmented
    ema_decay: float = 0.995  # weight EMA per step (0 = off); validation, best.pt and the final model use the average
    sweep: Optional[str] = None  # name of the hyperparameter sweep this run is a trial of (the Runs page groups by it)

    def validate(self) -> None:
        self.data.validate()
        if self.epochs < 1:
            raise CharlabError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise CharlabError(f"batch_size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise CharlabError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise CharlabError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.ema_decay < 1:
            raise CharlabError(f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}")
        if self.patience < 0 or self.limit_batches < 0:
            raise CharlabError("patience and limit_batches must not be negative")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise CharlabError(f"max_minutes must be positive (or None for no limit), got {self.max_minutes}")
        if self.freeze_body and not self.init_from:
            raise CharlabError("freeze_body needs init_from: a freshly initialised body is not worth freezing")
        if not 0 <= self.distill_weight <= 1:
            raise CharlabError(f"distill_weight must be in [0, 1], got {self.distill_weight}")
        if not self.distill_temperature > 0:
            raise CharlabError(f"distill_temperature must be positive, got {self.distill_temperature}")
        # the registries import no torch either; imported here so this module stays a leaf (no numpy)
        from .balance import BALANCE_STRATEGIES, CLASS_WEIGHTS
        from .optim import OPTIMIZERS, SCHEDULES

        for name, allowed in (("optimizer", OPTIMIZERS.names()), ("schedule", SCHEDULES.names()),
                              ("balance", BALANCE_STRATEGIES.names()), ("mode", ("max", "min")),
                              ("balance_weights", CLASS_WEIGHTS.names())):
            if getattr(self, name) not in allowed:
                raise CharlabError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")


def to_dict(cfg: Any) -> dict:
    """Dataclass -> plain JSON-able dict (tuples become lists)."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type, d: dict | None) -> Any:
    """Rebuild a (nested) config dataclass; unknown keys are ignored so old checkpoints still load."""
    if d is not None and not isinstance(d, dict):
        raise CharlabError(f"a {cls.__name__} must be a JSON object of fields, not a {type(d).__name__}")
    d = dict(d or {})
    kwargs = {}
    for f in fields(cls):
        if f.name not in d:
            continue
        v = d[f.name]
        sub = _DATACLASS_FIELDS.get((cls, f.name))
        if sub is not None:
            v = from_dict(sub, v)
        elif isinstance(v, list) and isinstance(f.default, tuple):
            v = tuple(v)
        _check_type(cls, f, v)
        kwargs[f.name] = v
    return cls(**kwargs)


def _check_type(cls: type, f: dataclasses.Field, v: Any) -> None:
    """A field given a value of another kind ("epochs": "many") is refused by name; None stays
    allowed wherever the default is None, and an int stands for a float (JSON has one number)."""
    default = f.default if f.default is not dataclasses.MISSING else None
    if v is None or default is None:
        return
    want = type(default)
    ok = isinstance(v, want) and not (want is int and isinstance(v, bool))
    if want is float and isinstance(v, int) and not isinstance(v, bool):
        ok = True
    if not ok:
        raise CharlabError(f"config field {cls.__name__}.{f.name} must be {want.__name__}, got {v!r}")


_DATACLASS_FIELDS = {
    (TrainConfig, "data"): DataConfig,
    (TrainConfig, "augment"): AugmentConfig,
    (TrainConfig, "model"): ModelConfig,
}
