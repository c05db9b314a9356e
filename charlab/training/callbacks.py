"""The few training decisions, each a small object that DECIDES and sets a flag; `fit()`
ACTS on the flags (Lightning's early_stopping.py keeps the two apart; nothing here throws
to stop training or reaches into the model behind fit's back).
"""
from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..checkpoint import save_checkpoint
from ..errors import CharlabError


class EarlyStopping:
    """Track the monitored validation metric (fastai's tracker.py): remember the best
    epoch and its weights, set `should_stop` after `patience` epochs without an
    improvement larger than `min_delta` (patience 0 never stops), and `restore` the best
    weights at the end."""

    def __init__(self, monitor: str = "val_acc", mode: str = "max", patience: int = 10, min_delta: float = 0.0):
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, patience, abs(min_delta)
        self.best: Optional[float] = None
        self.best_epoch = 0
        self.wait = 0
        self.should_stop = False
        self.best_state: Optional[dict] = None  # CPU copy of the best weights

    def check_keys(self, available: list[str]) -> None:
        """Fail before training, not after the first epoch, on a metric that will never exist."""
        if self.monitor not in available:
            raise CharlabError(f"cannot monitor {self.monitor!r}: the metrics of each epoch are "
                               f"{', '.join(available)}")

    def is_improvement(self, value: float) -> bool:
        if value is None or not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta

    def update(self, epoch: int, row: dict, model: nn.Module) -> bool:
        """Record epoch `epoch`'s metrics row; True when it is the new best."""
        if self.monitor not in row:
            self.check_keys(sorted(row))
        value = row[self.monitor]
        if self.is_improvement(value):
            self.best, self.best_epoch, self.wait = float(value), epoch, 0
            model = getattr(model, "module", model)
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            return True
        self.wait += 1
        if self.patience > 0 and self.wait >= self.patience:
            self.should_stop = True
        return False

    def restore(self, model: nn.Module) -> bool:
        """Load the best weights into `model`; False when no epoch was ever the best."""
        if self.best_state is None:
            return False
        getattr(model, "module", model).load_state_dict(self.best_state)
        return True

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait, "should_stop": self.should_stop}

    def load_state_dict(self, state: dict) -> None:
        self.best = state.get("best")
        self.best_epoch = int(state.get("best_epoch", 0))
        self.wait = int(state.get("wait", 0))
        self.should_stop = bool(state.get("should_stop", False))


class Checkpointing:
    """best.pt (the best epoch by the monitored VALIDATION metric) and last.pt (every epoch,
    plus the TrainState a resume needs). Both are atomic, so a run killed mid-save keeps the
    previous file. Every rank calls `save` (the state gathers every rank's random streams);
    only one built with paths (rank 0's) writes."""

    def __init__(self, best_path: Optional[Path], last_path: Optional[Path], config, classes: list[str],
                 input_shape: tuple[int, int]):
        self.best_path = Path(best_path) if best_path else None
        self.last_path = Path(last_path) if last_path else None
        self.config, self.classes, self.input_shape = config, list(classes), tuple(input_shape)

    def save(self, state, row: dict, *, improved: bool = False) -> None:
        """last.pt from `state` (a TrainState), and best.pt first when this epoch is the new best."""
        snapshot = state.state_dict()
        if self.last_path is None:
            return
        if improved:
            self.save_best(state.eval_model, state.epoch, row)
        save_checkpoint(self.last_path, state.model, self.config, self.classes, self.input_shape,
                        epoch=snapshot.pop("epoch"), metrics=row, **snapshot)

    def save_best(self, model: nn.Module, epoch: int, row: Optional[dict], **extra) -> None:
        if self.best_path is not None:
            save_checkpoint(self.best_path, model, self.config, self.classes, self.input_shape,
                            epoch=epoch, metrics=row, **extra)


class StopRequest:
    """A STOP file in the run directory asks the trainer to finish the batch and stop.
    A file (not a signal or a pipe) because the asker may be the app, another shell, or
    `runs stop` long after the launcher is gone."""

    def __init__(self, path: Optional[Path]):
        self.path = Path(path) if path else None

    def requested(self) -> bool:
        return self.path is not None and self.path.exists()

    def clear(self) -> None:
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


class TimeBudget:
    """Stop cleanly after the epoch that crosses `max_minutes` of training (counted across
    resumes, so a resumed run does not get a fresh budget)."""

    def __init__(self, max_minutes: Optional[float], elapsed_before: float = 0.0):
        self.limit_s = max_minutes * 60.0 if max_minutes else None
        self.elapsed_before = elapsed_before
        self.t0 = time.monotonic()

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.t0

    @property
    def should_stop(self) -> bool:
        return self.limit_s is not None and self.elapsed() >= self.limit_s


class ModelEMA:
    """Exponential moving average of the weights and BN statistics (Polyak averaging), updated
    after every optimiser step. The average is what validation, best.pt and the final model
    use: on 40 images per class the raw weights at a high learning rate wander, and their
    average is the better model at any point of the run (a snapshot mid-run most of all).

    The decay warms up as min(decay, (1+n)/(10+n)) (TF's num_updates, timm's ModelEmaV2), so
    the first epochs are not dragged back to the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.module = copy.deepcopy(getattr(model, "module", model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.updates = float(decay), 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        src = getattr(model, "module", model).state_dict()
        for k, v in self.module.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(src[k].detach(), alpha=1 - d)
            else:  # BN's num_batches_tracked
                v.copy_(src[k])

    def state_dict(self) -> dict:
        return {"updates": self.updates, "model": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state.get("updates", 0))
        self.module.load_state_dict(state["model"])
