"""Building blocks shared by the zoo's families (private: import from the family modules).

`ConvClassifier` is the one shape every zoo model has:

    features (convs, the Grad-CAM target) -> pool (adaptive) -> flatten -> neck (hidden fc) -> head (Linear) / T

so the trainer, fine-tuning, freezing and Grad-CAM need one code path, not one per family.
"""
from __future__ import annotations

import operator
import os
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import torch
from torch import nn

from ..errors import CharlabError

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "mish": lambda: nn.Mish(inplace=True),  # Misra 2019; the Chars74K report's experiment 3
    "silu": lambda: nn.SiLU(inplace=True),
}


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except (KeyError, TypeError):
        raise CharlabError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}") from None


def check_positive(name: str, value, *, integer: bool = False) -> float:
    """Validate a numeric model option, so a typo in a config fails at build time, in words."""
    ok_type = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_type) or not value > 0:
        kind = "a positive integer" if integer else "a positive number"
        raise CharlabError(f"option {name} must be {kind}, got {value!r}")
    return value


def check_fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise CharlabError(f"option {name} must be a number in [0, 1), got {value!r}")
    return float(value)


def check_choice(name: str, value, choices: Sequence[str]) -> str:
    if value not in choices:
        raise CharlabError(f"option {name} must be one of {', '.join(map(str, choices))}; got {value!r}")
    return value


def conv_bn_act(cin: int, cout: int, k: int, *, stride: int = 1, padding: int | None = None,
                act: str = "relu", bn_after_act: bool = False) -> nn.Sequential:
    """Conv (no bias: BN follows) + BN + activation; `bn_after_act` is Keras' Conv(activation)->BN order."""
    pad = k // 2 if padding is None else padding
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=False)
    bn = nn.BatchNorm2d(cout)
    return nn.Sequential(conv, activation(act), bn) if bn_after_act else nn.Sequential(conv, bn, activation(act))


class ResidualBlock(nn.Module):
    """He et al. 2016's basic block at constant width: x + BN(conv(ReLU(BN(conv(x))))), then ReLU."""

    def __init__(self, channels: int, act: str = "relu"):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act1 = activation(act)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.act2 = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.bn1(self.conv1(x)))
        return self.act2(x + self.bn2(self.conv2(y)))  # N×C×H×W, shape kept


def fc_block(fin: int, fout: int, *, act: str = "relu", dropout: float = 0.0, bn: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(fin, fout, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm1d(fout))
    layers.append(activation(act))
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def image_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    """28 -> (28, 28); (28, 112) stays; anything else is a CharlabError."""
    def as_int(v) -> int:  # numpy ints from a shape pass; 28.0, "28" and True do not
        if isinstance(v, (bool, str)):
            raise TypeError
        return operator.index(v)

    try:
        try:
            hw = (as_int(image_size),) * 2
        except TypeError:
            hw = tuple(as_int(v) for v in image_size)
    except TypeError:
        raise CharlabError(f"image_size must be an int or (height, width), got {image_size!r}") from None
    if len(hw) != 2 or min(hw) < 1:
        raise CharlabError(f"image_size must be a positive int or (height, width), got {image_size!r}")
    return hw  # type: ignore[return-value]


@torch.no_grad()
def feature_shape(module: nn.Module, in_chans: int, hw: tuple[int, int], what: str) -> tuple[int, int, int]:
    """C, h, w of `module`'s output for one in_chans×H×W image.

    A dry run instead of arithmetic per layer, so a family's layout can change without a
    second place to keep in sync; a too-small image surfaces here, as a CharlabError. It runs
    in eval mode, so BN neither needs a batch nor updates statistics.
    """
    # One real CPU image, not the meta device: meta kernels (BN's among them) import torch._dynamo
    # and torch._decomp on first use, 4-7 s at load ~10, which every first model build paid (the
    # app's first prediction included); one 1×C×H×W forward at these sizes costs milliseconds.
    was_training = module.training
    module.eval()
    try:
        y = module(torch.zeros(1, in_chans, *hw))
    except RuntimeError as e:
        raise CharlabError(f"image size {hw[0]}×{hw[1]} is too small for model {what}: "
                           f"{str(e).splitlines()[0]}") from None
    finally:
        module.train(was_training)
    if y.dim() != 4 or min(y.shape[-2:]) < 1:
        raise CharlabError(f"image size {hw[0]}×{hw[1]} is too small for model {what}")
    return int(y.shape[1]), int(y.shape[2]), int(y.shape[3])


SIDE_FEATURES = 32  # width of the side vector's embedding beside the image features


class SideNoise(nn.Module):
    """The side kind's training-time jitter (charlab.data.geometry) and, for an optional side
    vector, its dropout, in train mode only; drawn from torch's global RNG, which fit() seeds per
    epoch as it does for dropout. An optional vector arrives as N×(G+1), its last column the
    "present" flag: a dropped row becomes all zeros, exactly what an image without a page gives."""

    def __init__(self, kind: str, dropout: float = 0.0):
        super().__init__()
        self.kind, self.dropout = kind, float(dropout)

    def forward(self, side: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return side
        from ..data.geometry import side_kind

        if not self.dropout:
            return side_kind(self.kind).jitter(side)  # N×G
        box = side_kind(self.kind).jitter(side[:, :-1])  # N×G
        keep = (torch.rand(len(side), 1, device=side.device) >= self.dropout).to(side.dtype)  # N×1
        return torch.cat([box, side[:, -1:]], dim=1) * keep  # N×(G+1)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}" + (f", dropout={self.dropout:g}" if self.dropout else "")


class BoundSide(nn.Module):
    """A side-input model with one batch's side vectors bound, callable as model(x): what
    image-only code (saliency, Grad-CAM) calls. Made per call and holding no state of its own, so
    a model shared across sessions is never changed. side: float 1×G (broadcast) or N×G."""

    def __init__(self, model: nn.Module, side: torch.Tensor):
        super().__init__()
        self.model = model
        self.side = side

    @property
    def cam_layer(self) -> nn.Module:
        return self.model.cam_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = self.side.to(x.device)
        return self.model(x, side.expand(len(x), -1) if len(side) == 1 else side)


class ConvClassifier(nn.Module):
    """features -> pool -> flatten -> neck -> head, logits divided by the softmax temperature.

    Reports' nets flatten a fixed-size map into their first fc layer. Here an adaptive average
    pool to the grid the net has *at the configured image size* sits before that flatten: at
    that size it is the identity (the report's architecture exactly), and any other size or
    aspect ratio (digit-sum composites are 28×112) still reaches the same fc layer.
    `global_pool=True` pools to 1×1 instead (ResNet/EfficientNet).
    """

    def __init__(self, features: nn.Module, num_classes: int, *, in_chans: int, image_size,
                 neck: Callable[[int], tuple[nn.Module, int]] | None = None,
                 pre_pool: Optional[nn.Module] = None, global_pool: bool = False,
                 temperature: float = 1.0, cam: str = "features", name: str = "?"):
        super().__init__()
        hw = image_hw(image_size)
        self.features = features  # N×in×H×W -> N×C×h×w
        reduce = nn.Sequential(pre_pool) if pre_pool is not None else nn.Sequential()
        c, gh, gw = feature_shape(nn.Sequential(features, reduce), in_chans, hw, repr(name))
        grid = (1, 1) if global_pool else (gh, gw)
        self.pool = nn.Sequential(*reduce, nn.AdaptiveAvgPool2d(grid))  # N×C×h×w -> N×C×gh×gw
        flat = c * grid[0] * grid[1]
        self.neck, head_in = neck(flat) if neck is not None else (nn.Identity(), flat)  # N×flat -> N×head_in
        self.head = nn.Linear(head_in, num_classes)  # N×head_in -> N×classes
        self.temperature = float(check_positive("temperature", temperature))
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.image_size = hw
        self._cam = cam  # dotted submodule path; a property, so the module is not registered twice

    @property
    def cam_layer(self) -> nn.Module:
        """Last conv feature module with spatial extent; Grad-CAM hooks its N×C×h×w output."""
        return self.get_submodule(self._cam)

    side_dim = 0  # length of the side vector the head also takes (add_side_inputs); 0 = the image alone
    side_dropout = 0.0  # > 0: the side vector is optional (trained with that share hidden); model(x) reads the image alone

    def add_side_inputs(self, kind: str, dropout: float = 0.0) -> "ConvClassifier":
        """Make the head take a side vector of `kind` (charlab.data.geometry) beside the image:
        side N×G -> training noise (train mode only, like dropout) -> BatchNorm (standardises it
        on the training data's statistics) -> Linear G→32 -> ReLU -> Linear 32→32 -> ReLU, concatenated
        with the neck's output before a new, wider head. Called right after building, before training.
        With `dropout` > 0 a "present" flag joins the vector (G+1 inputs) and that share of training
        rows is zeroed, so an image with no page (side None) is a case the head has learned."""
        from ..data.geometry import side_kind

        g = side_kind(kind).dim
        self.side_kind, self.side_dim, self.side_dropout = kind, g, float(dropout)
        g_in = g + (1 if dropout else 0)
        self.side_net = nn.Sequential(SideNoise(kind, dropout), nn.BatchNorm1d(g_in), nn.Linear(g_in, SIDE_FEATURES),
                                      nn.ReLU(), nn.Linear(SIDE_FEATURES, SIDE_FEATURES), nn.ReLU())  # N×G' -> N×32
        self.head = nn.Linear(self.head.in_features + SIDE_FEATURES, self.num_classes)  # N×(head_in+32) -> N×classes
        return self

    def _side_vector(self, side: Optional[torch.Tensor], n: int, like: torch.Tensor) -> torch.Tensor:
        """The side net's input: N×G, or N×(G+1) with the present flag for an optional vector."""
        if not self.side_dropout:
            if side is None:
                raise CharlabError(f"this model also reads the ink's size and position on its page "
                                   f"(side inputs {self.side_kind!r}); pass them: model(x, side)")
            return side.to(like.dtype)
        if side is None:  # no page: the all-zeros row it learned from dropped vectors
            return like.new_zeros(n, self.side_dim + 1)
        side = side.to(like.dtype)
        if side.shape[1] == self.side_dim + 1:  # already flagged (an exported graph's input): 0 = no page
            return torch.cat([side[:, :-1] * side[:, -1:], side[:, -1:]], dim=1)  # N×(G+1), no page -> all zeros
        return torch.cat([side, torch.ones_like(side[:, :1])], dim=1)  # N×(G+1); shaped by `side`, so a traced graph keeps N free

    def forward(self, x: torch.Tensor, side: Optional[torch.Tensor] = None) -> torch.Tensor:
        z = self.pool(self.features(x)).flatten(1)  # N×(C·gh·gw)
        h = self.neck(z)  # N×head_in
        if self.side_dim:
            h = torch.cat([h, self.side_net(self._side_vector(side, len(h), h))], dim=1)  # N×(head_in+32)
        elif side is not None:
            raise CharlabError("this model takes no side inputs (it was built without DataConfig.side_inputs)")
        logits = self.head(h)  # N×classes
        return logits if self.temperature == 1.0 else logits / self.temperature

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, image_size={self.image_size}"


# --- local pretrained weights ------------------------------------------------------------------

def read_weights_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state_dict from a local file (raw, or under "state_dict"/"model"); never downloads."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CharlabError(f"pretrained weights file not found: {p} (charlab never downloads weights; "
                           f"put a torchvision ImageNet .pth file there)")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip/EOF errors all mean "not a weights file" to a user
        raise CharlabError(f"{p} is not a readable torch weights file: {e}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CharlabError(f"{p} holds no state_dict of tensors")
    return state


def load_pretrained(model: nn.Module, path: str | os.PathLike, *, prefix: str, src_prefix: str = "",
                    skip: Iterable[str] = (), name: str = "?") -> dict:
    """Copy a torchvision state_dict into `model`: its key `src_prefix + k` goes to `prefix + k`.

    Every body tensor must be found with the right shape, except those under `skip` (a stem
    or head this zoo replaced), so a weights file of another architecture fails in words
    instead of loading half a net. A first conv with 3 input channels (RGB) is summed to the
    model's 1 channel, which keeps its response to a grey image (R=G=B) the same.
    Returns {"path", "loaded", "skipped"} for the model's record.
    """
    src = read_weights_file(path)
    own = model.state_dict()
    skip = tuple(skip)
    new, skipped, problems = {}, [], []
    for key, target in own.items():
        if not key.startswith(prefix):
            continue  # neck and head are new by design
        if key.startswith(skip):
            skipped.append(key)
            continue
        src_key = src_prefix + key[len(prefix):]
        w = src.get(src_key)
        if w is None:
            problems.append(f"{src_key} missing")
            continue
        if w.dim() == 4 and target.dim() == 4 and w.shape[1] == 3 and target.shape[1] == 1 \
                and w.shape[0] == target.shape[0] and w.shape[2:] == target.shape[2:]:
            w = w.sum(dim=1, keepdim=True)  # RGB -> grey: out = Σ_c w_c·x for x the same in every channel
        if w.shape != target.shape:
            problems.append(f"{src_key} has shape {tuple(w.shape)}, model needs {tuple(target.shape)}")
            continue
        new[key] = w.to(target.dtype)
    if problems:
        shown = "; ".join(problems[:3]) + (f"; … {len(problems) - 3} more" if len(problems) > 3 else "")
        raise CharlabError(f"{path} does not fit {name} ({len(problems)} tensors): {shown}. "
                           f"Is it the torchvision ImageNet file for {name}?")
    model.load_state_dict(new, strict=False)
    return {"path": str(path), "loaded": len(new), "skipped": skipped}
