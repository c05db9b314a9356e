"""The Chars74K report's experiment-5 CNN (71.43%): the well-known Kaggle MNIST CNN
(Deotte, "How to choose CNN architecture MNIST") with a temperature-5 softmax head."""
from __future__ import annotations

from torch import nn

from . import register_model
from ._layers import ConvClassifier, check_fraction, conv_bn_act


@register_model(report="Chars74K report: experiment 5 Kaggle CNN, 71.43%")
def kaggle_cnn(num_classes, in_chans=1, image_size=28, *, temperature: float = 5.0, dropout: float = 0.4):
    """Kaggle MNIST CNN: 32-32-32s2, 64-64-64s2, 128 4×4, each conv with BN; dropout; logits / 5.

    The stride-2 5×5 convs replace max pooling; the 4×4 conv turns the 4×4 map of a 28×28
    input into one 128-vector. `temperature` divides the logits (5 in the report).
    """
    p = check_fraction("dropout", dropout)

    def block(cin: int, cout: int) -> nn.Sequential:
        # Keras' Conv(activation="relu") -> BatchNorm order, 'valid' 3×3 convs, 'same' stride-2 5×5.
        return nn.Sequential(conv_bn_act(cin, cout, 3, padding=0, bn_after_act=True),  # H-2
                             conv_bn_act(cout, cout, 3, padding=0, bn_after_act=True),  # H-4
                             conv_bn_act(cout, cout, 5, stride=2, bn_after_act=True),  # ceil(H/2)
                             nn.Dropout(p))

    features = nn.Sequential()
    features.add_module("block1", block(in_chans, 32))  # 28 -> 12
    features.add_module("block2", block(32, 64))  # 12 -> 4
    features.add_module("conv3", conv_bn_act(64, 128, 4, padding=0, bn_after_act=True))  # 4 -> 1
    # Grad-CAM hooks block2: conv3's output is 1×1 at 28×28, which would localise nothing.
    return ConvClassifier(features, num_classes, in_chans=in_chans, image_size=image_size,
                          neck=lambda flat: (nn.Dropout(p), flat), temperature=temperature,
                          cam="features.block2", name="kaggle_cnn")
