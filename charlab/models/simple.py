"""The digit-sum report's simple CNN baseline (13.5% sum accuracy there)."""
from __future__ import annotations

from torch import nn

from . import register_model
from ._layers import ConvClassifier, check_fraction


@register_model(report="digit-sum report: simple CNN baseline, 13.5%")
def simple_cnn(num_classes, in_chans=1, image_size=28, *, dropout: float = 0.7):
    """Plain CNN: conv 32/64/128 (3×3, ReLU, maxpool 2), fc 256, dropout 0.7, fc classes."""
    p = check_fraction("dropout", dropout)
    chans = [in_chans, 32, 64, 128]
    layers: list[nn.Module] = []
    for i, (cin, cout) in enumerate(zip(chans, chans[1:])):
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
        if i < 2:
            layers.append(nn.MaxPool2d(2))  # 28 -> 14 -> 7
    # The last pool runs in ConvClassifier.pool so Grad-CAM sees 7×7 at 28×28 (3×3 after it).
    return ConvClassifier(nn.Sequential(*layers), num_classes, in_chans=in_chans, image_size=image_size,
                          neck=lambda flat: (nn.Sequential(nn.Linear(flat, 256), nn.ReLU(inplace=True),
                                                           nn.Dropout(p)), 256),
                          pre_pool=nn.MaxPool2d(2), name="simple_cnn")
