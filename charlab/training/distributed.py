"""DistributedDataParallel plumbing, kept to what `fit()` needs.

`python -m charlab train` runs unchanged under `torchrun --nproc_per_node N`: torchrun sets
WORLD_SIZE / RANK / LOCAL_RANK, we join the process group (gloo on CPU, nccl on GPU), each
rank trains on its own slice of every global batch, and sums are all-reduced so every rank
sees the same metrics. Only rank 0 touches the run directory. BatchNorm statistics are
synchronised over the ranks (`sync_batchnorm`), so the world size does not change the maths.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn


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


SHUTDOWN_WAIT_S = 60  # how long a rank waits at the final barrier for the others before leaving anyway


def shutdown(wait: bool = True) -> None:
    """Leave the process group; with `wait` (a run that ended normally), after every rank has
    reached this point.

    Without the barrier a rank destroys its gloo group while another still finishes (rank 0
    writes last.pt and the status after the last collective): under load, a 2-rank run stopped
    mid-epoch once ended with rank 1 aborted at exit ("terminate called without an active
    exception") though both had finished their work. A rank leaving on an error does not wait:
    the others may be inside a collective that a barrier would be mixed into; and a rank that
    died is waited for only SHUTDOWN_WAIT_S seconds (gloo's monitored barrier)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if wait and dist.get_world_size() > 1:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=timedelta(seconds=SHUTDOWN_WAIT_S))
            else:
                dist.barrier()
    except Exception:  # another rank is gone: there is nobody left to wait for
        pass
    finally:
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


def all_gather_object(obj) -> list:
    """[obj of rank 0, obj of rank 1, …] on every rank ([obj] in a single process)."""
    if not active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


class _AllReduceSum(torch.autograd.Function):
    """y = Σ_ranks x, differentiable: every rank's y depends on every rank's x, so the gradient
    reaching x is the sum of the ranks' gradients of y (torch.distributed.nn's all_reduce, which
    is deprecated)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        g = grad.clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        return g


class SyncedBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the GLOBAL batch: per-channel sums,
    sums of squares and counts are all-reduced (differentiably) over the ranks, so 2 ranks of
    8 images normalise exactly as 1 process of 16 would. For CPU ranks: torch's
    nn.SyncBatchNorm refuses tensors that are not on a GPU ("expected input tensor to be on
    GPU"); on CUDA `sync_batchnorm` uses torch's own. Same parameters and buffers as
    BatchNorm, so its state_dict loads into the plain model and back."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and active()):
            return super().forward(x)
        c = x.shape[1]
        dims = [0, *range(2, x.dim())]  # every axis but the channels
        xf = x.float()
        local = torch.cat([xf.sum(dims), (xf * xf).sum(dims), xf.new_tensor([x.numel() / c])])  # 2C+1
        total = _AllReduceSum.apply(local)
        n = total[-1]
        mean = total[:c] / n
        var = (total[c:2 * c] / n - mean * mean).clamp_min(0)  # biased, as BatchNorm normalises with
        with torch.no_grad():
            if self.track_running_stats:
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), m)
                self.running_var.lerp_((var * n / (n - 1).clamp_min(1)).to(self.running_var.dtype), m)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm layer synchronised across ranks when more than one rank trains (the
    model itself otherwise). Each rank's shard is 1/world of the batch: unsynchronised
    statistics from 8 images instead of 16 are noisier and make the run depend on the world size."""
    if not active() or not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert(model)


def _convert(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, SyncedBatchNorm):
        new = SyncedBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        for p_old, p_new in zip(module.parameters(), new.parameters()):
            p_new.requires_grad_(p_old.requires_grad)  # a frozen body stays frozen
        return new
    for name, child in module.named_children():
        setattr(module, name, _convert(child))
    return module
