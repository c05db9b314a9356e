"""Checkpoints that rebuild their model alone (nanoGPT style).

A checkpoint is a plain dict saved with torch.save and read with `weights_only=True`:
  model         state_dict
  config        TrainConfig as a dict (data preprocessing, augmentation, model name + kwargs)
  classes       class names, index order
  input_shape   [H, W] the model was trained on
  epoch         epochs completed
  metrics       the metrics row of that epoch
  optimizer, scheduler, rng, early_stopping   (optional) what `resume` needs
  members       (optional) further ensemble members, each a dict with the keys above but no resume
                state (`save_ensemble`): the file is then an ensemble whose first member is the
                top-level model, so a reader that knows nothing of members still gets a working model
  charlab_version
Writes are atomic (temp file, fsync, os.replace), so a run killed mid-save leaves the
previous checkpoint intact.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from .config import TrainConfig, from_dict, to_dict
from .errors import CheckpointError, UnknownNameError
from .io import atomic_write_bytes

FORMAT_VERSION = 1
MEMBERS = "members"  # the key of an ensemble file's further members
_MEMBER_KEYS = ("format_version", "model", "config", "classes", "input_shape", "epoch", "metrics")  # no resume state


@dataclass
class Checkpoint:
    model: nn.Module  # in eval mode, on CPU unless map_location said otherwise
    config: TrainConfig
    classes: list[str]
    input_shape: tuple[int, int]
    epoch: int = 0
    metrics: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)  # the raw dict, for resume (optimizer, scheduler, rng…)
    path: Optional[str] = None


def save_checkpoint(path: str | os.PathLike, model: nn.Module, config: TrainConfig, classes: list[str],
                    input_shape: tuple[int, int], *, epoch: int = 0, metrics: dict | None = None,
                    **extra: Any) -> None:
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    config_dict = to_dict(config)
    # Store every builder option, defaults included: a later change of a default must not
    # silently change what an old checkpoint computes (the weight names would still match).
    config_dict["model"]["kwargs"] = {**_model_defaults(config.model.name), **config_dict["model"]["kwargs"]}
    state = {
        "format_version": FORMAT_VERSION,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": config_dict,
        "classes": list(classes),
        "input_shape": [int(input_shape[0]), int(input_shape[1])],
        "epoch": int(epoch),
        "metrics": dict(metrics or {}),
        **extra,
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def _model_defaults(name: str) -> dict:
    from .models import model_options

    try:
        opts = model_options(name)
    except UnknownNameError:
        return {}
    # `pretrained` is where weights came from, not how the model computes; keep JSON-able values only
    return {k: v for k, v in opts.items() if k != "pretrained" and isinstance(v, (int, float, str, bool, type(None)))}


def read_checkpoint_dict(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The raw dict, with every failure turned into a CheckpointError that names the file."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.is_dir():
        raise CheckpointError(f"{p} is a folder, not a checkpoint file (did you mean a run directory?)")
    check_device(map_location)
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle, zip and EOF errors all mean the same thing to a user
        raise CheckpointError(f"{p} is not a readable charlab checkpoint (corrupt or truncated?): {e}") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state or "classes" not in state:
        raise CheckpointError(f"{p} is a torch file but not a charlab checkpoint (no model/config/classes)")
    return state


def build_model_from_config(config: TrainConfig, num_classes: int, input_shape: tuple[int, int]) -> nn.Module:
    from .models import create_model

    try:
        return create_model(config.model.name, num_classes=num_classes, in_chans=1,
                            image_size=tuple(input_shape), side_inputs=config.data.side_inputs,
                            side_dropout=config.data.side_dropout,
                            **dict(config.model.kwargs))
    except UnknownNameError as e:
        raise CheckpointError(f"checkpoint needs a model this charlab does not have: {e}") from None


def check_device(device: str | torch.device) -> None:
    """A device this machine lacks is the user's mistake, not a corrupt file: say so first."""
    kind = torch.device(device).type
    if kind == "cuda" and not torch.cuda.is_available():
        raise CheckpointError("device 'cuda' was asked for, but this machine has no CUDA GPU (use --device cpu)")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise CheckpointError("device 'mps' was asked for, but it is not available here (use --device cpu)")


def _mismatch(expected: dict, got: dict) -> str:
    """One short line: how the weights differ from the model (torch's message lists every tensor)."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [k for k in expected if k in got and tuple(expected[k].shape) != tuple(got[k].shape)]
    parts = [f"{len(v)} {what} (e.g. {v[0]!r})" for what, v in
             (("missing", missing), ("unexpected", unexpected), ("of another shape", shapes)) if v]
    return "weights " + ", ".join(parts) if parts else "weights do not load"


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """One model. For an ensemble file (`save_ensemble`) that is its first member; `load_members` gives all."""
    return _from_state(read_checkpoint_dict(path, map_location), path, map_location)


def load_members(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> list[Checkpoint]:
    """Every model a file holds: [the model] for a plain checkpoint, K for an ensemble file."""
    state = read_checkpoint_dict(path, map_location)
    extra = state.get(MEMBERS) or []
    if not isinstance(extra, list) or not all(isinstance(m, dict) and "model" in m and "config" in m
                                              and "classes" in m for m in extra):
        raise CheckpointError(f"{path}: its ensemble members are not charlab checkpoints (corrupt file?)")
    return [_from_state(state, path, map_location)] + [_from_state(m, path, map_location, f"{path} (member {k + 2})")
                                                        for k, m in enumerate(extra)]


def ensemble_size(state: dict) -> int:
    """How many models a raw checkpoint dict holds (1 unless it is an ensemble file)."""
    return 1 + len(state.get(MEMBERS) or [])


def save_ensemble(path: str | os.PathLike, members: list[str | os.PathLike], **extra: Any) -> None:
    """Write K checkpoint files (each one model) as ONE file that loads as their ensemble
    (charlab.predict averages the members' softmax). Resume state is dropped: an ensemble is
    a finished model. A member that is itself an ensemble file adds all its models. The members
    must share classes and preprocessing: they are loaded together first, which checks that, so
    a bad set fails before anything is written."""
    from .predict import load_predictor

    if len(members) < 2:
        raise CheckpointError(f"an ensemble needs at least 2 checkpoints, got {len(members)}")
    load_predictor([os.fspath(m) for m in members])  # raises CheckpointError naming the member that differs
    states = []
    for m in members:
        s = read_checkpoint_dict(m)
        states += [{k: one[k] for k in _MEMBER_KEYS if k in one} for one in [s] + list(s.get(MEMBERS) or [])]
    state = {**states[0], MEMBERS: states[1:], **extra}
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def _from_state(state: dict, path, map_location, label=None) -> Checkpoint:
    config = from_dict(TrainConfig, state["config"])
    classes = list(state["classes"])
    input_shape = tuple(state.get("input_shape") or (config.data.image_size, config.data.image_size))
    model = build_model_from_config(config, len(classes), input_shape)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        raise CheckpointError(f"{label or path} does not fit model {config.model.name!r} with {len(classes)} classes "
                              f"(a checkpoint of another architecture?): "
                              f"{_mismatch(model.state_dict(), state['model'])}") from None
    model.to(map_location).eval()
    return Checkpoint(model=model, config=config, classes=classes, input_shape=input_shape,
                      epoch=int(state.get("epoch", 0)), metrics=dict(state.get("metrics", {})),
                      state=state, path=str(path))
