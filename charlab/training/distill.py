"""Distillation: a student also learns the softened predictions of a frozen teacher (Hinton,
Vinyals and Dean 2015, "Distilling the knowledge in a neural network").

The teacher is a checkpoint file, one model or an ensemble file (`charlab ensemble`): an
ensemble's soft target is the mean of its members' softened probabilities, so one student
learns what the ensemble averages. The teacher runs in eval mode on the SAME augmented batch
the student trains on, inside the step: it draws no random numbers (no dropout, BatchNorm on
its running statistics), so augmenting ahead and an exact resume are untouched.

    loss = (1 - w) · CE(s, y; label smoothing) + w · T² · KL(softmax(t / T) ‖ softmax(s / T))

T² keeps the soft term's gradients on the scale of the hard term's as T grows (Hinton §2).
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError

SIDE_FIELD = "side_inputs"  # the DataConfig field of a model's side vector (its kind must match between teacher and student)


class Teacher(nn.Module):
    """Frozen models whose averaged softened probabilities are the soft target. `reads_side[k]`:
    member k's head also takes the batch's side vector (DataConfig.side_inputs); the others
    read the image alone, so a teacher without side inputs can teach a student with them."""

    def __init__(self, members: Sequence[nn.Module], temperature: float, reads_side: Optional[Sequence[bool]] = None):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.temperature = float(temperature)
        self.reads_side = list(reads_side) if reads_side is not None else [False] * len(self.members)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "Teacher":  # a teacher never trains: model.train() around it keeps it in eval
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, *side: torch.Tensor) -> torch.Tensor:
        """The student's batch (x N×1×H×W, and its N×G side vector if it has one) -> N×C soft
        target: the mean over members of softmax(logits / T)."""
        probs = [F.softmax(m(x, *side).float() / self.temperature if reads else m(x).float() / self.temperature, dim=1)
                 for m, reads in zip(self.members, self.reads_side)]  # K × (N×C)
        return torch.stack(probs).mean(0)  # N×C


class DistillationLoss(nn.Module):
    """(1 - weight) · `hard`(logits, y) + weight · T² · KL(teacher ‖ student at T), batch mean."""

    def __init__(self, hard: nn.Module, weight: float, temperature: float):
        super().__init__()
        self.hard, self.weight, self.temperature = hard, float(weight), float(temperature)

    def forward(self, logits: torch.Tensor, y: torch.Tensor, soft_target: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        log_student = F.log_softmax(logits / t, dim=1)  # N×C
        soft = F.kl_div(log_student, soft_target, reduction="batchmean") * t * t
        return (1 - self.weight) * self.hard(logits, y) + self.weight * soft


def load_teacher(path: str | os.PathLike, classes: list[str], input_shape: tuple[int, int], preprocessing: dict,
                 temperature: float, device: torch.device) -> Teacher:
    """The frozen teacher of a run, checked against the student's data before any training:
    the same classes in the same order, the same input size and preprocessing (a teacher must
    read the images as the student sees them)."""
    from ..checkpoint import load_members

    members = load_members(path)  # CheckpointError names the file when missing, corrupt or foreign
    first = members[0]
    if list(first.classes) != list(classes):
        theirs, ours = list(first.classes), list(classes)
        detail = (f"the same {len(ours)} classes in another order" if sorted(theirs) == sorted(ours) else
                  f"{len(theirs)} classes ({_sample(theirs)}), this run's data has {len(ours)} ({_sample(ours)})")
        raise CheckpointError(f"teacher {path} knows {detail}; a teacher must know the student's classes in the "
                              "same order")
    if tuple(first.input_shape) != tuple(input_shape):
        raise CheckpointError(f"teacher {path} reads {first.input_shape[0]}×{first.input_shape[1]} images, this run's "
                              f"are {input_shape[0]}×{input_shape[1]}")
    theirs = first.config.data.preprocessing()
    # the side vector is an extra input, not a change of the image: each member takes it or not
    differ = [f"{k} {theirs.get(k)!r} (this run: {v!r})" for k, v in preprocessing.items()
              if k != SIDE_FIELD and theirs.get(k) != v]
    if differ:
        raise CheckpointError(f"teacher {path} preprocesses its images otherwise: {', '.join(differ)}")
    kinds = [getattr(m.config.data, SIDE_FIELD, None) for m in members]
    ours = preprocessing.get(SIDE_FIELD)
    if any(k and k != ours for k in kinds):
        raise CheckpointError(f"teacher {path} reads side inputs {next(k for k in kinds if k)!r} ({SIDE_FIELD}); "
                              f"this run's data has {ours!r}")
    reads_side = [bool(k) for k in kinds]
    return Teacher([m.model for m in members], temperature, reads_side).to(device)


def _sample(names: list[str]) -> str:
    return " ".join(names[:6]) + (" …" if len(names) > 6 else "")
