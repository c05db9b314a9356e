"""torchvision EfficientNet-B0 for 1-channel small images (the Chars74K report's experiment 6)."""
from __future__ import annotations

from torch import nn

from ..compat import tv_models
from . import register_model
from ._layers import ConvClassifier, check_fraction, load_pretrained


@register_model(report="Chars74K report: experiment 6 EfficientNet-B0 from scratch")
def efficientnet_b0(num_classes, in_chans=1, image_size=28, *, dropout: float = 0.2,
                    pretrained: str | None = None):
    """torchvision EfficientNet-B0 from scratch, stride-1 stem; dropout 0.2 + Linear head.

    `pretrained` optionally loads a local torchvision ImageNet file (RGB stem summed to grey).
    """
    p = check_fraction("dropout", dropout)
    net = tv_models().efficientnet_b0(weights=None)  # never downloads
    # B0 divides the side by 32, which turns 28×28 into 1×1; a stride-1 stem conv stops at /16
    # (28 -> 2×2 after the last stage). Same 3×3 kernel, so ImageNet stem weights still fit.
    net.features[0][0] = nn.Conv2d(in_chans, 32, 3, stride=1, padding=1, bias=False)
    model = ConvClassifier(net.features, num_classes, in_chans=in_chans, image_size=image_size,  # N×1280×h×w
                           neck=lambda flat: (nn.Dropout(p), flat), global_pool=True, name="efficientnet_b0")
    model.pretrained_info = None
    if pretrained is not None:
        model.pretrained_info = load_pretrained(model, pretrained, prefix="features.", src_prefix="features.",
                                              name="efficientnet_b0")
    return model
