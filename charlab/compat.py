"""Import torchvision where its compiled ops do not load.

torchvision 0.28.0 is the only release that pairs with torch 2.13.0, and its wheel is a
CUDA build: with the CPU torch, `_C.so` fails to load and `import torchvision` raises
`RuntimeError: operator torchvision::nms does not exist`, because
`torchvision/_meta_registrations.py` registers fake kernels for `torchvision::nms` and
`torchvision::qnms` unconditionally. When (and only when) the compiled ops are missing we
define those two schemas first, so the pure-Python parts (transforms.v2, models, datasets)
import. Where the ops do load (a GPU machine) nothing is defined and torchvision is untouched.
`torchvision.io` decoding and `ops.nms` still do not work here: charlab decodes with Pillow.
"""
from __future__ import annotations

import importlib
import sys
import types

_lib = None  # keeps the fallback torch.library.Library alive (schemas vanish when it is collected)
native_ops = None  # True when torchvision's compiled ops loaded, False when shimmed, None before import


def _ops_registered() -> bool:
    import torch

    try:
        torch.ops.torchvision.nms.default  # noqa: B018 - attribute access is the check
        return True
    except (AttributeError, RuntimeError):
        return False


def _define_fallback_schemas() -> None:
    global _lib
    import torch

    _lib = torch.library.Library("torchvision", "DEF")
    _lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def import_torchvision() -> types.ModuleType:
    """Return the torchvision module, shimming its compiled ops if they cannot load."""
    global native_ops
    if "torchvision" in sys.modules and native_ops is not None:
        return sys.modules["torchvision"]
    import torch  # noqa: F401 - torch must be imported before torchvision's extension

    try:
        tv = importlib.import_module("torchvision")
        native_ops = _ops_registered()
        return tv
    except RuntimeError as e:
        if "torchvision::nms" not in str(e):
            raise
    # The failed import left half-initialised modules behind; drop them and retry with schemas.
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    if not _ops_registered():
        _define_fallback_schemas()
    tv = importlib.import_module("torchvision")
    native_ops = False
    return tv


def tv_models() -> types.ModuleType:
    import_torchvision()
    return importlib.import_module("torchvision.models")


def tv_transforms_v2() -> types.ModuleType:
    import_torchvision()
    return importlib.import_module("torchvision.transforms.v2")


def tv_datasets() -> types.ModuleType:
    import_torchvision()
    return importlib.import_module("torchvision.datasets")
