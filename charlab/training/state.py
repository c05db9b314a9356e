"""`TrainState`: everything a run needs to continue, gathered in one object.

last.pt is `save_checkpoint(model, …, **state.state_dict())`, and a resume is one
`state.load_state_dict(last_pt_dict)`. The layout is the earlier release's, key for key
(optimizer, scheduler, ema, early_stopping, rng, partial, elapsed_s beside model and epoch),
plus `rng_ranks`: the random streams of EVERY rank, so a DDP run stopped mid-epoch resumes
each rank's augmentation and dropout where they were. A last.pt without it (an earlier
release, or another world size) gives rank 0 its `rng` and reseeds the others.

Randomness: each epoch's augmentation and dropout streams are seeded by (seed, epoch, rank),
so a run resumed at an epoch boundary repeats what the uninterrupted run would have done; only
a stop mid-epoch needs the stored states.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from . import distributed
from .callbacks import EarlyStopping, ModelEMA

PARTIAL_SUMS = ("loss_sum", "correct", "n", "seconds")  # what a stopped epoch carries over


def stream_seed(*parts) -> int:
    """A 63-bit seed from (seed, epoch, stream, rank): independent streams, stable across runs."""
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:15], 16)


class TrainState:
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, ema: Optional[ModelEMA],
                 stopper: EarlyStopping, *, seed: int, device: torch.device, env: distributed.DistEnv,
                 best_path: Optional[Path] = None):
        self.model, self.optimizer, self.scheduler, self.ema, self.stopper = model, optimizer, scheduler, ema, stopper
        self.seed, self.device, self.env, self.best_path = seed, device, env, best_path
        self.epoch = 0  # epochs completed
        self.partial: Optional[dict] = None  # a stopped epoch: {"epoch", "steps", *PARTIAL_SUMS} (sums over ranks)
        self.elapsed_s = 0.0  # training seconds before this process (the time budget counts across resumes)
        self.generator: Optional[torch.Generator] = None  # this epoch's augmentation stream
        self._rng: Optional[dict] = None  # this rank's streams at a mid-epoch stop, until that epoch resumes

    @property
    def eval_model(self) -> nn.Module:
        """What validation, best.pt and the result use: the weight average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def begin_epoch(self, epoch: int) -> int:
        """Seed epoch `epoch`'s streams (or continue them after a mid-epoch stop); -> its first batch."""
        rank = self.env.rank
        self.generator = torch.Generator(device=self.device).manual_seed(stream_seed(self.seed, epoch, "augment", rank))
        torch.manual_seed(stream_seed(self.seed, epoch, "dropout", rank))
        start = int(self.partial["steps"]) if self.partial and int(self.partial["epoch"]) == epoch else 0
        if start and self._rng:
            torch.set_rng_state(self._rng["torch"])
            if "augment" in self._rng:
                self.generator.set_state(self._rng["augment"])
            if self.device.type == "cuda" and "cuda" in self._rng:
                torch.cuda.set_rng_state_all(self._rng["cuda"])
        self._rng = None
        return start

    def carried(self, epoch: int) -> torch.Tensor:
        """The sums a stopped part of `epoch` already counted (zeros otherwise), float64 [4]."""
        p = self.partial if self.partial and int(self.partial["epoch"]) == epoch else None
        return torch.tensor([float(p[k]) for k in PARTIAL_SUMS] if p else [0.0] * 4, dtype=torch.float64)

    def stop_within(self, epoch: int, steps: int, sums: torch.Tensor) -> None:
        """Record a stop after `steps` batches of `epoch` (sums: PARTIAL_SUMS over all ranks, with the carry)."""
        self.partial = {"epoch": epoch, "steps": steps, **dict(zip(PARTIAL_SUMS, sums.tolist()))}

    def end_epoch(self, epoch: int) -> None:
        self.epoch, self.partial = epoch, None

    def _rank_rng(self) -> dict:
        state = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        if self.generator is not None:
            state["augment"] = self.generator.get_state()
        return state

    def state_dict(self) -> dict:
        """What last.pt holds beside the weights. Under DDP every rank must call it (it gathers
        each rank's random streams); rank 0 writes it."""
        ranks = distributed.all_gather_object(self._rank_rng())
        return {"epoch": self.epoch, "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "early_stopping": self.stopper.state_dict(), "rng": ranks[0], "rng_ranks": ranks,
                "partial": self.partial, "elapsed_s": self.elapsed_s}

    def load_state_dict(self, state: dict) -> None:
        """Restore from a last.pt dict (this release's layout or the earlier one's)."""
        getattr(self.model, "module", self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        self.stopper.load_state_dict(state.get("early_stopping") or {})
        if self.stopper.best_epoch and self.best_path is not None and Path(self.best_path).exists():
            from ..checkpoint import read_checkpoint_dict

            self.stopper.best_state = read_checkpoint_dict(self.best_path)["model"]  # restored at the end
        self.epoch = int(state["epoch"])
        self.partial, self.elapsed_s = state.get("partial"), float(state.get("elapsed_s") or 0.0)
        ranks = state.get("rng_ranks")
        if ranks and len(ranks) == self.env.world_size:
            self._rng = ranks[self.env.rank]
        else:  # the earlier layout held rank 0's streams only
            self._rng = state.get("rng") if self.env.rank == 0 else None
