"""Named training recipes: a ready TrainConfig for the default model and for each experiment
of the reports, so a comparison in BENCHMARKS.md is one name away from being rerun.

    from charlab.recipes import get_recipe, list_recipes
    cfg = get_recipe("report_kaggle_cnn", source="../shared/data/chars74k_hnd/trainPart1.zip")
    cfg = get_recipe("report_kaggle_cnn_noaug")          # the same without augmentation
    python -m charlab train --recipe report_lenet --source DIR

`default` is TrainConfig() itself: charlab/config.py holds the one set of defaults, so the CLI,
the app's Train page and this registry can never disagree about what "default" trains.

Each report recipe keeps what the report fixed (architecture, optimiser, learning rate,
augmentation) and nothing it did not: the data source stays a parameter, and the epoch
count is short enough for a 2-core machine (the reports trained longer on a GPU).
Every recipe also exists as `<name>_noaug`, the same config with augmentation `none`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from .config import AugmentConfig, DataConfig, ModelConfig, TrainConfig
from .errors import UnknownNameError
from .registry import Registry

RECIPES: Registry[Callable[[], TrainConfig]] = Registry("recipe")
NOAUG = "_noaug"


def _preset(name: str) -> AugmentConfig:
    from .augment import get_preset  # augment imports torch; listing recipes need not

    return get_preset(name)


def _report(model: str, *, kwargs: Optional[dict] = None, augment: str = "chars74k_report", epochs: int = 30,
            lr: float = 1e-3, batch_size: int = 64, optimizer: str = "adam", **over) -> TrainConfig:
    """The reports' common setting: Adam at a constant 1e-3, plain cross-entropy, batch 64,
    no weight decay and no weight averaging, early stopping on validation accuracy."""
    base = dict(data=DataConfig(), augment=_preset(augment), model=ModelConfig(name=model, kwargs=dict(kwargs or {})),
                epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=0.0,
                schedule="constant", label_smoothing=0.0, patience=10, ema_decay=0.0)
    base.update(over)
    return TrainConfig(**base)


@RECIPES.register("default")
def default() -> TrainConfig:
    """charlab's best recipe (charnet, strong batch augmentation, OneCycle AdamW, EMA): TrainConfig()."""
    return TrainConfig()


@RECIPES.register("strokes")
def strokes() -> TrainConfig:
    """The default recipe plus two Draw-canvas pen-stroke redrawings of every training image."""
    cfg = TrainConfig()
    cfg.data.strokes = 2  # random pens 10-32 px on the 280-px canvas: the Draw page's domain (charlab.data.strokes)
    return cfg


@RECIPES.register("side")
def side() -> TrainConfig:
    """`strokes`, and the head also reads the ink's box on its page before the crop (size, position, aspect: DataConfig.side_inputs)."""
    cfg = strokes()
    cfg.data.side_inputs = "box"  # charlab.data.geometry: c and C, o and O differ in size on a fixed page or canvas
    return cfg


@RECIPES.register("side_pen_optional")
def side_pen_optional() -> TrainConfig:
    """`side` with the pen's width taken off the box, and a quarter of the boxes hidden in training so it also reads page-less images (the shipped default.pt is this recipe at 32×32 input: checkpoints/default.json)."""
    cfg = side()
    cfg.data.side_inputs = "pen_box"  # a 20-px canvas pen and a thin tablet pen give the same size for one centre line
    cfg.data.side_dropout = 0.25  # MNIST, CSV rows and synthetic glyphs have no page: the head learned that case too
    return cfg


@RECIPES.register("report_lenet")
def report_lenet() -> TrainConfig:
    """Chars74K report, LeNet-like net (ReLU): the report got about 50%."""
    return _report("lenet")


@RECIPES.register("report_lenet_mish")
def report_lenet_mish() -> TrainConfig:
    """Chars74K report experiment 3: the LeNet-like net with Mish activations."""
    return _report("lenet", kwargs={"activation": "mish"})


@RECIPES.register("report_lenet_temperature")
def report_lenet_temperature() -> TrainConfig:
    """Chars74K report experiment 4: the LeNet-like net with a temperature-5 softmax."""
    return _report("lenet", kwargs={"temperature": 5.0})


@RECIPES.register("report_kaggle_cnn")
def report_kaggle_cnn() -> TrainConfig:
    """Chars74K report experiment 5: the Kaggle MNIST CNN with a temperature-5 head (71.43%)."""
    return _report("kaggle_cnn")


@RECIPES.register("report_efficientnet_b0")
def report_efficientnet_b0() -> TrainConfig:
    """Chars74K report experiment 6: EfficientNet-B0 from scratch (the report's worst)."""
    return _report("efficientnet_b0", epochs=10)  # ~20× the compute of kaggle_cnn per image on CPU


@RECIPES.register("report_resnet18")
def report_resnet18() -> TrainConfig:
    """ResNet-18 (small stem) with the digit-sum report's Linear-128-ReLU-Dropout head."""
    return _report("resnet18", epochs=10)  # 11 M parameters at full 28×28 resolution: minutes per epoch on 2 cores


@RECIPES.register("report_seed36_resnet")
def report_seed36_resnet() -> TrainConfig:
    """The 36-class report (seed 36): residual CNN, oversampling with rotated/sheared copies (macro-F1 0.878)."""
    return _report("seed36_resnet", augment="report36", balance="oversample")


def list_recipes(pattern: Optional[str] = None, *, with_noaug: bool = True) -> list[str]:
    """Recipe names, sorted; with `with_noaug` each also as `<name>_noaug`."""
    names = RECIPES.names()
    if with_noaug:
        names = sorted(names + [n + NOAUG for n in names])
    if pattern is not None:
        import fnmatch

        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def recipe_doc(name: str) -> str:
    """The one-line description of a recipe (for the CLI and the app)."""
    base, noaug = _split(name)
    doc = (RECIPES.get(base).__doc__ or "").strip().splitlines()[0]
    return doc + (" Without augmentation." if noaug else "")


def get_recipe(name: str, *, source: Optional[str] = None, augment: Optional[bool] = None,
               **overrides) -> TrainConfig:
    """A fresh TrainConfig for recipe `name` (or `<name>_noaug`).

    `source` sets data.source; `augment=False` switches augmentation off (as the `_noaug`
    name does); other keyword arguments replace top-level TrainConfig fields (epochs=5).
    An unknown name raises UnknownNameError listing the valid ones.
    """
    base, noaug = _split(name)
    cfg = RECIPES.get(base)()
    if noaug or augment is False:
        cfg.augment = AugmentConfig(preset="none")
    if source is not None:
        cfg.data.source = source
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    cfg.validate()
    return cfg


def _split(name: str) -> tuple[str, bool]:
    if name in RECIPES:
        return name, False
    if name.endswith(NOAUG) and name[: -len(NOAUG)] in RECIPES:
        return name[: -len(NOAUG)], True
    raise UnknownNameError(f"unknown recipe {name!r}; valid: {', '.join(list_recipes())}")
