"""torchvision ResNets adapted to 1-channel small images, with the digit-sum report's head."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ..compat import tv_models
from . import register_model
from ._layers import ConvClassifier, check_choice, check_fraction, check_positive, load_pretrained

# Stems. torchvision's ImageNet stem (7×7 stride 2 + maxpool) divides the side by 4 before layer1,
# so a 28×28 character reaches layer4 as 1×1 and layer2-4 barely see any spatial structure.
#   pool     (default) 3×3 stride 1, then the maxpool: the first conv sees 2-3 px strokes at full
#            resolution, layer1 runs at 14×14 and layer4 at 2×2. Chosen over `small` because it
#            has ~3.7× fewer multiply-adds (~120 M vs ~450 M per 28×28 image for resnet18) and
#            trained ~3× faster on the 2-core CPU (23 vs 7 img/s, busy machine) -- the
#            difference between minutes and an hour for a Chars74K comparison.
#   small    3×3 stride 1, no maxpool (the CIFAR ResNet adaptation, He et al. 2016 §4.2): layer1 at
#            28×28, layer4 at 4×4. Most spatial detail; pick it on a GPU.
#   imagenet torchvision's own stem, for large inputs; the only one whose pretrained conv1 fits.
STEMS = ("pool", "small", "imagenet")


def _resnet(arch: str, num_classes, in_chans, image_size, *, stem, hidden, dropout, pretrained):
    check_choice("stem", stem, STEMS)
    check_positive("hidden", hidden, integer=True)
    p = check_fraction("dropout", dropout)
    net = getattr(tv_models(), arch)(weights=None)  # never downloads; weights come from `pretrained`
    if stem == "imagenet":
        net.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
    else:
        net.conv1 = nn.Conv2d(in_chans, 64, 3, stride=1, padding=1, bias=False)
    parts = [("conv1", net.conv1), ("bn1", net.bn1), ("relu", net.relu)]
    if stem != "small":
        parts.append(("maxpool", net.maxpool))
    parts += [(f"layer{i}", getattr(net, f"layer{i}")) for i in range(1, 5)]
    # torchvision's own names under `features.`, so an ImageNet state_dict maps by prefix alone.
    features = nn.Sequential(OrderedDict(parts))  # N×in×H×W -> N×C×h×w (C = 512 or 2048)

    def neck(flat: int):  # the digit-sum report's head: Linear -> 128 -> ReLU -> Dropout 0.3 -> Linear
        return nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(inplace=True), nn.Dropout(p)), hidden

    model = ConvClassifier(features, num_classes, in_chans=in_chans, image_size=image_size, neck=neck,
                           global_pool=True, name=arch)
    model.pretrained_info = None
    if pretrained is not None:
        # A replaced 3×3 stem cannot take the 7×7 ImageNet conv1, nor its BN statistics.
        skip = () if stem == "imagenet" else ("features.conv1.", "features.bn1.")
        model.pretrained_info = load_pretrained(model, pretrained, prefix="features.", skip=skip, name=arch)
    return model


_REPORT = "digit-sum report: pretrained ResNet-50 + new head, 84–85%"


@register_model(report=_REPORT)
def resnet18(num_classes, in_chans=1, image_size=28, *, stem: str = "pool", hidden: int = 128,
             dropout: float = 0.3, pretrained: str | None = None):
    """torchvision ResNet-18, small-image stem, head Linear→128→ReLU→Dropout 0.3→Linear.

    `stem` pool | small | imagenet (see resnet.py); `pretrained` a local torchvision ImageNet
    weights file (RGB conv1 summed to grey where the stem keeps its shape), never downloaded.
    """
    return _resnet("resnet18", num_classes, in_chans, image_size, stem=stem, hidden=hidden,
                   dropout=dropout, pretrained=pretrained)


@register_model(report=_REPORT)
def resnet50(num_classes, in_chans=1, image_size=28, *, stem: str = "pool", hidden: int = 128,
             dropout: float = 0.3, pretrained: str | None = None):
    """torchvision ResNet-50 (bottleneck blocks, 2048-d features), small-image stem, the same head.

    The report's strongest end-to-end model (with ImageNet weights). Options as resnet18; on a
    CPU it trains ~3× slower than resnet18 (8 vs 23 img/s at 28×28 on the busy 2-core machine).
    """
    return _resnet("resnet50", num_classes, in_chans, image_size, stem=stem, hidden=hidden,
                   dropout=dropout, pretrained=pretrained)
