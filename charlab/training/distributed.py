"""DistributedDataParallel plumbing, kept to what `fit()` needs.

`python -m charlab train` runs unchanged under `torchrun --nproc_per_node N`: torchrun sets
WORLD_SIZE / RANK / LOCAL_RANK, we join the process group (gloo on CPU, nccl on GPU), each
rank trains on its own slice of every global batch, and sums are all-reduced so every rank
sees the same metrics. Only rank 0 touches the run directory.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def detect() -> DistEnv:
    """Read torchrun's environment; a plain `python` process is a world of one."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return DistEnv()
    return DistEnv(world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(requested: str, env: DistEnv) -> torch.device:
    """auto -> cuda when present; under DDP each rank takes the GPU of its local rank."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            from ..errors import CharlabError

            raise CharlabError("device 'cuda' was asked for but torch sees no GPU here; use --device cpu or auto")
        if env.enabled:
            return torch.device("cuda", env.local_rank)
    return torch.device(requested)


def init(env: DistEnv, device: torch.device) -> None:
    """Join the process group once (a no-op for a single process)."""
    if not env.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=env.rank, world_size=env.world_size)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks in place (identity in a single process)."""
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when any rank says True: a STOP file seen by rank 0 stops every rank at the same batch."""
    if not active():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
