"""charlab's own net, the default recipe's model: a compact VGG-style CNN with BN.

Why this shape: on 40 images per class the reports' nets either underfit (LeNet) or spend
their capacity in a big fc layer (Kaggle CNN, the 36-class residual CNN) that memorises the
few writers. Stacked 3×3 convs with BN and a global average pool put the parameters in
the convolutions, where the heavy batch augmentation can regularise them, and the pool
makes the net indifferent to the input's size and aspect ratio.
"""
from __future__ import annotations

from torch import nn

from . import register_model
from ._layers import ConvClassifier, check_choice, check_fraction, check_positive, conv_bn_act


@register_model(report="charlab default recipe (charlab.recipes 'default')")
def charnet(num_classes, in_chans=1, image_size=28, *, width: int = 16, dropout: float = 0.3,
            activation: str = "relu"):
    """VGG-style 2×conv3 blocks (w, 2w, 4w) with BN and max-pool, a conv3 to 8w, global average pool, dropout, fc.

    `width` w sets every stage's channels (16: ~0.15 M parameters, 32: ~0.6 M); `dropout` is before the
    head; `activation` relu | mish | silu. Any input of at least 8×8 works (three 2× pools).
    """
    w = int(check_positive("width", width, integer=True))
    p = check_fraction("dropout", dropout)
    check_choice("activation", activation, ("relu", "mish", "silu"))

    def stage(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(conv_bn_act(cin, cout, 3, act=activation), conv_bn_act(cout, cout, 3, act=activation),
                             nn.MaxPool2d(2))  # N×cout×H/2×W/2

    features = nn.Sequential()
    features.add_module("stage1", stage(in_chans, w))  # 28 -> 14
    features.add_module("stage2", stage(w, 2 * w))  # 14 -> 7
    features.add_module("stage3", stage(2 * w, 4 * w))  # 7 -> 3
    features.add_module("conv4", conv_bn_act(4 * w, 8 * w, 3, act=activation))  # N×8w×3×3 at 28: the Grad-CAM map
    return ConvClassifier(features, num_classes, in_chans=in_chans, image_size=image_size,
                          neck=lambda flat: (nn.Dropout(p) if p else nn.Identity(), flat), global_pool=True,
                          cam="features.conv4", name="charnet")
