"""The model registry and zoo (timm style).

    @register_model
    def lenet(num_classes, in_chans=1, image_size=28, *, activation="relu", temperature=1.0): ...

One tiny builder per variant; it receives image_size as an (H, W) tuple. A builder's keyword-only parameters are the model's options:
their defaults are what `model_info` reports, and `create_model` rejects any other option
with the list of valid ones. Every non-underscore module of this package is imported at the
end of this file, so a new family (charnet.py) only has to exist to be registered.

Every model takes float N×in_chans×H×W in [0, 1] (any H, W the net's strides allow, any aspect
ratio), returns logits N×num_classes already divided by its softmax temperature, and exposes
`model.head` (the final Linear, replaced when fine-tuning) and `model.cam_layer` (the module
whose N×C×h×w output Grad-CAM hooks).
"""
from __future__ import annotations

import copy
import importlib
import inspect
import operator
import pkgutil
from functools import lru_cache
from typing import Callable, Iterator, Optional

import torch
from torch import nn

from ..errors import CharlabError
from ..registry import Registry
from ._layers import BoundSide, ConvClassifier, image_hw

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
_META: dict[str, dict] = {}  # name -> {"report", "supports_non_square"}; written only at import time
_STANDARD = ("num_classes", "in_chans", "image_size")  # every builder's positional parameters


def register_model(fn: Optional[Callable[..., nn.Module]] = None, *, name: Optional[str] = None,
                   report: str = "", supports_non_square: bool = True):
    """Register a builder `fn(num_classes, in_chans=1, image_size=28, *, option=default, …)`.

    Usable bare (`@register_model`) or with arguments (`@register_model(name="x", report="…")`).
    `report` names the report/experiment the model reproduces; `supports_non_square=False`
    tells the app to hide the model for composite sources. A duplicate name raises at import.
    """

    def deco(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        params = list(inspect.signature(f).parameters)
        if tuple(params[:3]) != _STANDARD:
            raise TypeError(f"model builder {f.__name__} must start with (num_classes, in_chans, image_size)")
        key = name or f.__name__
        MODELS.register(key)(f)
        _META[key] = {"report": report, "supports_non_square": bool(supports_non_square)}
        return f

    return deco(fn) if fn is not None else deco


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names, sorted; `pattern` is a shell glob ("resnet*")."""
    return MODELS.names(pattern)


def model_options(name: str) -> dict:
    """The options `name` takes and their defaults (its builder's keyword-only parameters)."""
    sig = inspect.signature(MODELS.get(name))
    return {p.name: p.default for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY}


def _positive_int(what: str, value) -> int:
    """numpy and 0-d tensor integers pass (they come from label arithmetic); bools and floats do not."""
    try:
        n = operator.index(value) if not isinstance(value, bool) else -1
    except TypeError:
        n = -1
    if n < 1:
        raise CharlabError(f"{what} must be a positive integer, got {value!r}")
    return n


def create_model(name: str, num_classes: int, in_chans: int = 1, image_size: int | tuple[int, int] = 28,
                 side_inputs: Optional[str] = None, side_dropout: float = 0.0, **kwargs) -> nn.Module:
    """Build model `name` for `num_classes` classes on in_chans×H×W images, in train mode.

    `side_inputs` (a key of charlab.data.geometry.SIDE_INPUTS, as DataConfig.side_inputs) makes
    its head also take that side vector: `model(x, side)`, side float N×G; with `side_dropout` > 0
    (DataConfig.side_dropout) the vector is optional: `model(x)` reads the image alone."""
    builder = MODELS.get(name)  # unknown name -> UnknownNameError listing the valid ones
    num_classes = _positive_int("num_classes", num_classes)
    in_chans = _positive_int("in_chans", in_chans)
    image_size = image_hw(image_size)  # builders always receive (H, W)
    options = model_options(name)
    if kwargs.get("pretrained", "") is None and "pretrained" not in options:
        # ModelConfig.pretrained defaults to None, and callers pass it through for every model.
        kwargs.pop("pretrained")
    takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(builder).parameters.values())
    unknown = sorted(set(kwargs) - set(options))
    if unknown and not takes_any:
        valid = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "none"
        raise CharlabError(f"model {name!r} has no option {', '.join(unknown)}; it takes: {valid}")
    model = builder(num_classes, in_chans, image_size, **kwargs)
    if side_inputs:
        if not isinstance(model, ConvClassifier):
            raise CharlabError(f"model {name!r} ({type(model).__name__}) cannot take side inputs: only the zoo's "
                               "ConvClassifier head concatenates them")
        model.add_side_inputs(side_inputs, dropout=side_dropout)
    return model


def side_dim(model: nn.Module) -> int:
    """Length of the side vector `model` reads beside the image (0: the image alone)."""
    return int(getattr(getattr(model, "module", model), "side_dim", 0))


def side_optional(model: nn.Module) -> bool:
    """Whether a side-input `model` also reads images that come without their side vector."""
    return bool(getattr(getattr(model, "module", model), "side_dropout", 0.0))


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@lru_cache(maxsize=None)  # building resnet50 to count it takes ~0.5 s; the answer never changes
def _param_count(name: str) -> int:
    with torch.random.fork_rng():  # a dry build must not move the caller's seeded RNG
        return count_parameters(create_model(name, num_classes=62, in_chans=1, image_size=28))


def model_info(name: str) -> dict:
    """What the app's model picker shows: description, options, size, provenance, shape support."""
    builder = MODELS.get(name)
    doc = inspect.getdoc(builder) or ""
    return {
        "name": name,
        "description": doc.split("\n\n")[0].replace("\n", " ").strip(),
        "kwargs": model_options(name),
        "params_62x28": _param_count(name),  # parameters at 62 classes, 1×28×28 input
        "report": _META.get(name, {}).get("report", ""),
        "supports_non_square": _META.get(name, {}).get("supports_non_square", True),
    }


# --- fine-tuning -------------------------------------------------------------------------------

def _head(model: nn.Module) -> nn.Module:
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Module):
        raise CharlabError(f"{type(model).__name__} has no `head` module; zoo models must expose one")
    return head


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Swap `model.head` for a fresh Linear(in_features, num_classes) on the same device; returns model."""
    old = _head(model)
    if not hasattr(old, "in_features"):
        raise CharlabError(f"{type(model).__name__}.head is a {type(old).__name__}, not a Linear layer")
    ref = next(old.parameters())
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None).to(ref.device, ref.dtype)
    inner = getattr(model, "module", model)
    inner.head = new
    if hasattr(inner, "num_classes"):
        inner.num_classes = num_classes
    return model


def head_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """The head's parameters, and those of the side-input MLP that feeds it (add_side_inputs)."""
    side_net = getattr(getattr(model, "module", model), "side_net", None)
    yield from _head(model).parameters()
    if isinstance(side_net, nn.Module):
        yield from side_net.parameters()


def body_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """Every parameter outside the head: what `freeze_body` sets requires_grad=False on."""
    head_ids = {id(p) for p in head_parameters(model)}
    return (p for p in model.parameters() if id(p) not in head_ids)


# --- bulk inference ------------------------------------------------------------------------------

def inference_copy(model: nn.Module) -> nn.Module:
    """An eval-only copy for large batches: each Conv2d followed directly by a BatchNorm2d inside a
    Sequential is folded into one conv (the BatchNorm becomes Identity), and the weights go
    channels_last. charnet reads 1.8× as many images a second on 2 CPU cores; the logits agree to
    ~1e-5. The model itself stays as trained: saliency hooks its modules and needs its gradients."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fast = copy.deepcopy(model).eval()
    for seq in fast.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.running_mean is not None:
                seq._modules[a], seq._modules[b] = fuse_conv_bn_eval(conv, bn), nn.Identity()
    return fast.to(memory_format=torch.channels_last)


def _discover() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


_discover()

__all__ = ["register_model", "list_models", "create_model", "model_options", "model_info", "count_parameters",
           "replace_head", "head_parameters", "body_parameters", "side_dim", "side_optional", "inference_copy", "BoundSide", "MODELS"]
