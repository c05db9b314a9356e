"""torchvision through charlab.compat: imports whether or not its compiled ops load."""
from __future__ import annotations

import torch

from charlab import compat


def test_import_via_compat_and_ops_schema():
    tv = compat.import_torchvision()
    assert isinstance(compat.native_ops, bool)
    assert hasattr(tv, "__version__")
    # with native ops this is the real kernel; shimmed, only the schema exists, defined by compat itself
    assert torch.ops.torchvision.nms.default is not None
    if not compat.native_ops:
        assert compat._lib is not None
    else:
        assert compat._lib is None
    assert compat.import_torchvision() is tv  # idempotent


def test_transforms_v2_models_datasets_import():
    v2 = compat.tv_transforms_v2()
    x = torch.rand(1, 28, 28)
    assert v2.RandomRotation(10)(x).shape == (1, 28, 28)
    models = compat.tv_models()
    net = models.resnet18(weights=None, num_classes=3).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, 32, 32)).shape == (1, 3)
    datasets = compat.tv_datasets()
    assert hasattr(datasets, "MNIST") and hasattr(datasets, "EMNIST")
