"""The 36-class (digits + capitals) report's small residual CNN."""
from __future__ import annotations

from torch import nn

from . import register_model
from ._layers import ConvClassifier, ResidualBlock, check_fraction


def _conv_relu(cin: int, cout: int) -> nn.Sequential:
    # The report's plain convs have no BN; only its residual blocks do.
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True))


@register_model(report="36-class report (seed 36): residual CNN")
def seed36_resnet(num_classes, in_chans=1, image_size=28, *, dropout: float = 0.0):
    """Residual CNN 16-32-64 with two BN residual blocks and an fc-500 head (~0.4 M params at 28×28).

    conv 1→16 3×3, ReLU, maxpool 2; residual block (16); conv 16→32, ReLU, maxpool; residual
    block (32); conv 32→64, ReLU, maxpool; flatten, fc 500, ReLU, fc classes. `dropout` before
    the last fc is 0 in the report.
    """
    features = nn.Sequential(
        _conv_relu(in_chans, 16), nn.MaxPool2d(2),  # N×16×H/2×W/2
        ResidualBlock(16),
        _conv_relu(16, 32), nn.MaxPool2d(2),  # N×32×H/4×W/4
        ResidualBlock(32),
        _conv_relu(32, 64),  # N×64×H/4×W/4: Grad-CAM's map (7×7 at 28 rather than 3×3 after the pool)
    )
    p = check_fraction("dropout", dropout)

    def neck(flat: int):
        layers = [nn.Linear(flat, 500), nn.ReLU(inplace=True)] + ([nn.Dropout(p)] if p else [])
        return nn.Sequential(*layers), 500

    # The report's last maxpool runs as the pool's first step: 28×28 -> 3×3 -> 576 features -> fc 500.
    return ConvClassifier(features, num_classes, in_chans=in_chans, image_size=image_size, neck=neck,
                          pre_pool=nn.MaxPool2d(2), name="seed36_resnet")
