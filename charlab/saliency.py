"""Where the model looked: Grad-CAM (Selvaraju et al. 2017) and input-gradient maps.

Both return an H×W float array in [0, 1] at the input's size, for the UI to overlay.

The models passed here are often shared (the app caches them across sessions with
st.cache_resource), so nothing persistent is changed:
- gradients come from `torch.autograd.grad`, never `.backward()`, so no parameter's
  `.grad` is written;
- the forward hook is removed in a `finally`, even when the forward pass raises;
- a model found in train mode is switched to eval for the call and switched back.

`SALIENCY` is the registry of map kinds: name -> SaliencyKind(title, fn), fn(model, x, class_idx=None)
-> H×W array.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .registry import Registry



@dataclass(frozen=True)
class SaliencyKind:
    title: str  # what a page calls the map
    fn: Callable  # fn(model, x, class_idx=None) -> H×W float array in [0, 1]


# in the order the Errors page shows them
SALIENCY: Registry[SaliencyKind] = Registry("saliency kind", ordered=True)


def _kind(name: str, title: str):
    def deco(fn):
        SALIENCY.register(name)(SaliencyKind(title, fn))
        return fn
    return deco


def as_input(image) -> torch.Tensor:
    """H×W / 1×H×W / 1×1×H×W, uint8 (0..255) or float ([0,1]), numpy or torch -> float32 1×1×H×W."""
    # np.array copies: torch warns on (and must not write through) a read-only view, e.g. a cached array
    x = torch.from_numpy(np.array(image)) if not isinstance(image, torch.Tensor) else image
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    x = x.float()
    while x.dim() < 4:
        x = x.unsqueeze(0)  # -> 1×1×H×W
    if x.shape[0] != 1 or x.shape[1] != 1:
        raise ValueError(f"saliency takes one single-channel image, got shape {tuple(x.shape)}")
    return x


@contextlib.contextmanager
def _eval_grad_mode(model: nn.Module):
    """Eval mode and autograd on for the duration (callers may sit inside torch.inference_mode)."""
    was_training = model.training
    if was_training:
        model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        if was_training:
            model.train()


def _normalise(m: torch.Tensor) -> np.ndarray:
    m = m.detach().float()
    m = m - m.min()
    top = m.max()
    return (m / top if top > 0 else m).cpu().numpy().astype(np.float32)


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@contextlib.contextmanager
def cam_forward(model: nn.Module, x, layer: nn.Module | None = None):
    """One forward pass that Grad-CAM can use afterwards: yields (logits 1×C, cam) where
    `cam(class_idx)` is the H×W Grad-CAM map in [0,1] for any class, without another forward.
    Top-k and saliency from the same pass (Predictor.explain)."""
    layer = layer if layer is not None else getattr(model, "cam_layer", None)
    if layer is None:
        raise ValueError(f"{type(model).__name__} has no cam_layer; pass layer= explicitly")
    x = as_input(x).to(_device_of(model))
    h, w = x.shape[-2:]
    captured: list[torch.Tensor] = []

    def hook(_mod, _inp, out):
        out = out[0] if isinstance(out, (tuple, list)) else out
        captured.append(out)
        # Hand the rest of the network a copy: an in-place op after the layer (ReLU(inplace=True))
        # would otherwise overwrite the activation we differentiate against.
        return out.clone()

    with _eval_grad_mode(model):
        handle = layer.register_forward_hook(hook)
        try:
            logits = model(x.clone())  # 1×C
        finally:
            handle.remove()
        if not captured:
            raise RuntimeError(f"cam_layer of {type(model).__name__} was not run by the forward pass")
        acts = captured[-1]  # 1×K×h'×w' (a module called twice: its last call is nearest the head)
        if acts.dim() != 4:
            raise RuntimeError(f"cam_layer output must be 1×K×h×w, got {tuple(acts.shape)}")

        def cam(class_idx: int) -> np.ndarray:
            (grads,) = torch.autograd.grad(logits[0, int(class_idx)], acts, retain_graph=True)  # 1×K×h'×w'
            weights = grads.mean(dim=(2, 3), keepdim=True)  # 1×K×1×1: global-average-pooled gradients
            m = (weights * acts).sum(dim=1, keepdim=True).detach()  # 1×1×h'×w'
            pos = F.relu(m)
            # An untrained or saturated model can have negative evidence everywhere; the ReLU'd map is
            # then all zero, so show the magnitude instead of a blank overlay.
            m = pos if pos.max() > 0 else m.abs()
            m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)  # 1×1×H×W
            return _normalise(m[0, 0])

        yield logits.detach(), cam


@_kind("grad_cam", "Grad-CAM")
def grad_cam(model: nn.Module, x, class_idx: int | None = None, layer: nn.Module | None = None) -> np.ndarray:
    """Grad-CAM on `model.cam_layer` (or `layer`) for `class_idx` (default: the predicted class).

    x: 1×1×H×W float in [0,1] (or anything `as_input` takes). Returns H×W in [0,1].
    """
    with cam_forward(model, x, layer) as (logits, cam):
        return cam(int(logits[0].argmax()) if class_idx is None else int(class_idx))


@_kind("input_gradient", "input gradient")
def input_gradient(model: nn.Module, x, class_idx: int | None = None) -> np.ndarray:
    """|d logit_c / d x| (Simonyan et al. 2013), scaled to [0,1]. Returns H×W."""
    x = as_input(x).to(_device_of(model))
    with _eval_grad_mode(model):
        x = x.clone().requires_grad_(True)  # a normal tensor even if x was made under inference_mode
        logits = model(x)  # 1×C
        c = int(logits[0].argmax()) if class_idx is None else int(class_idx)
        (g,) = torch.autograd.grad(logits[0, c], x)  # 1×1×H×W
    return _normalise(g[0, 0].abs())
