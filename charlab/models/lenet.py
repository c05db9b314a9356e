"""The Chars74K report's LeNet-like net, with its activation (experiment 3) and
softmax-temperature (experiment 4) options."""
from __future__ import annotations

from torch import nn

from . import register_model
from ._layers import ConvClassifier, activation, check_choice, check_fraction, fc_block

REPORT = "Chars74K report: LeNet-like net (exp. 3 Mish, exp. 4 temperature)"


def _lenet(num_classes, in_chans, image_size, *, act: str, temperature: float, dropout: float, name: str):
    check_choice("activation", act, ("relu", "mish"))
    p = check_fraction("dropout", dropout)
    # No padding, as LeNet: 28 -> conv 24 -> pool 12 -> conv 8 -> (pool 4 in self.pool); 16×4×4 = 256.
    features = nn.Sequential(
        nn.Conv2d(in_chans, 6, 5), nn.BatchNorm2d(6), activation(act), nn.MaxPool2d(2),  # N×6×(H-4)/2×…
        nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), activation(act),  # N×16×8×8 at 28: the Grad-CAM map
    )

    def neck(flat: int):
        return nn.Sequential(fc_block(flat, 256, act=act, dropout=p, bn=True),
                             fc_block(256, 128, act=act, dropout=p, bn=True)), 128

    return ConvClassifier(features, num_classes, in_chans=in_chans, image_size=image_size, neck=neck,
                          pre_pool=nn.MaxPool2d(2), temperature=temperature, name=name)


@register_model(report=REPORT)
def lenet(num_classes, in_chans=1, image_size=28, *, activation: str = "relu", temperature: float = 1.0,
          dropout: float = 0.4):
    """LeNet-like: conv 6 5×5 + BN + pool, conv 16 5×5 + BN + pool, fc 256 and fc 128 with BN and dropout.

    `activation` relu | mish; `temperature` divides the logits (softmax temperature).
    """
    return _lenet(num_classes, in_chans, image_size, act=activation, temperature=temperature,
                  dropout=dropout, name="lenet")


@register_model(report=REPORT)
def lenet_mish(num_classes, in_chans=1, image_size=28, *, temperature: float = 1.0, dropout: float = 0.4):
    """LeNet-like net with Mish activations (the report's experiment 3)."""
    return _lenet(num_classes, in_chans, image_size, act="mish", temperature=temperature,
                  dropout=dropout, name="lenet_mish")
