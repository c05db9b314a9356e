"""Optimizers and learning-rate schedules as registry keys (TrainConfig.optimizer / .schedule).

Importing this module imports no torch: config validation, the CLI's `choices` and the Train
page read `OPTIMIZERS.names()` / `SCHEDULES.names()` in commands that never build a tensor.
The builders import torch when they run.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from .registry import Registry

if TYPE_CHECKING:
    import torch

    from .config import TrainConfig

# name -> builder(params, config) -> torch.optim.Optimizer
OPTIMIZERS: Registry[Callable] = Registry("optimizer", ordered=True)
# name -> builder(optimizer, config, total_steps) -> an LR scheduler stepped once per batch
SCHEDULES: Registry[Callable] = Registry("schedule", ordered=True)


@OPTIMIZERS.register("adamw")
def _adamw(params, config: TrainConfig) -> torch.optim.Optimizer:
    import torch

    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


@OPTIMIZERS.register("adam")
def _adam(params, config: TrainConfig) -> torch.optim.Optimizer:
    import torch

    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


@OPTIMIZERS.register("sgd")
def _sgd(params, config: TrainConfig) -> torch.optim.Optimizer:
    import torch

    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


@SCHEDULES.register("onecycle")
def _onecycle(optimizer, config: TrainConfig, total_steps: int):
    import torch

    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps)


@SCHEDULES.register("cosine")
def _cosine(optimizer, config: TrainConfig, total_steps: int):
    import torch

    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)


@SCHEDULES.register("constant")
def _constant(optimizer, config: TrainConfig, total_steps: int):
    import torch

    # a scheduler all the same, so last.pt and resume treat every schedule alike
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def make_optimizer(model, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer over the trainable parameters (a frozen body has none)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return OPTIMIZERS.get(config.optimizer)(params, config)


def make_scheduler(optimizer, config: TrainConfig, steps_per_epoch: int):
    """Stepped once per batch, over the whole planned run."""
    return SCHEDULES.get(config.schedule)(optimizer, config, max(1, config.epochs * steps_per_epoch))
