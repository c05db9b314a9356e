"""Training images/s of every zoo model at 28×28, batch augmentation (`strong`) off and on, 2 and 1 threads.

Each measurement runs charlab's own `train_one_epoch` (uint8 batch -> float -> augment ->
forward/backward/AdamW step) on random images, after a warm-up. Off and on are measured in
alternating rounds (`--rounds`, each about `--seconds`) and the medians reported, so load from
other processes and oneDNN's first-batch kernel choice hit both alike; `aug_overhead` is the
training time the augmentation adds. The 1-thread column shows what a busy machine does to 2
OpenMP threads (see charlab.training.loop.set_cpu_threads).

`--device cuda` measures on the GPU the way fit() trains there: images resident on the device,
augmentation on the device, no channels_last; `--bf16` adds the bfloat16-autocast columns.
Thread counts do not apply there.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default="*", help="glob over the model names (default: all)")
    p.add_argument("--threads", default="2,1", help="torch CPU thread counts to compare (default 2,1)")
    p.add_argument("--batch-size", type=int, default=128, help="default 128 (the default recipe trains at 64)")
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per round and column (default 2)")
    p.add_argument("--rounds", type=int, default=3, help="alternating off/on rounds; medians reported (default 3)")
    p.add_argument("--preset", default="strong", help="augmentation preset for the 'on' column (default strong)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--bf16", action="store_true", help="also measure under bfloat16 autocast")


class _Bench:
    """One model's training loop on random data, measurable again and again."""

    def __init__(self, name: str, batch_size: int, device):
        import torch

        from ..models import create_model
        from ..training.loop import on_device

        self.device, self.batch_size = device, batch_size
        self.channels_last = device.type == "cpu"
        torch.manual_seed(0)
        model = create_model(name, num_classes=62, in_chans=1, image_size=28).to(device)
        self.model = model.to(memory_format=torch.channels_last) if self.channels_last else model
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
        self.g = torch.Generator().manual_seed(0)
        self.aug_gen = torch.Generator(device=device).manual_seed(0)
        self.n = batch_size * 64
        self.images = on_device(torch.randint(0, 256, (self.n, 1, 28, 28), dtype=torch.uint8, generator=self.g), device)
        self.labels = on_device(torch.randint(0, 62, (self.n,), generator=self.g), device)

    def images_per_s(self, augment_cfg, seconds: float, bf16: bool = False, batches: int = 64) -> float:
        import torch

        from ..training import Batches, train_one_epoch

        deadline = time.perf_counter() + seconds
        order = torch.randperm(self.n, generator=self.g).to(self.device)
        out = train_one_epoch(self.model, Batches(self.images, self.labels, order, self.batch_size, limit=batches),
                              self.opt, None, self.loss_fn, augment_cfg=augment_cfg, generator=self.aug_gen,
                              device=self.device, channels_last=self.channels_last, bf16=bf16,
                              stop_check=lambda: time.perf_counter() > deadline)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return out["n"] / out["seconds"]


def _columns(bench: _Bench, aug, preset: str, seconds: float, rounds: int, bf16: bool, prefix: str) -> dict:
    for cfg in (None, aug):  # warm-up: oneDNN / cuDNN pick their kernels on the first batches
        bench.images_per_s(cfg, 0.0, bf16=bf16, batches=3)
    off, on = [], []
    for _ in range(rounds):
        off.append(bench.images_per_s(None, seconds, bf16=bf16))
        on.append(bench.images_per_s(aug, seconds, bf16=bf16))
    a, b = statistics.median(off), statistics.median(on)
    return {prefix: round(a, 1), f"{prefix}_{preset}": round(b, 1), f"{prefix}_aug_overhead": round(a / b - 1, 3)}


def run(args: argparse.Namespace) -> dict:
    """-> {model: {"t2": img/s, "t2_strong": img/s, "t2_aug_overhead": …, "t1": …}, ...}."""
    import os

    import torch

    from ..augment import get_preset
    from ..errors import CharlabError
    from ..models import list_models

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CharlabError("bench train --device cuda: torch sees no CUDA GPU on this machine "
                           f"(torch {torch.__version__}, built {'with' if torch.version.cuda else 'without'} CUDA)")
    aug = get_preset(args.preset)
    gpu = device.type == "cuda"
    threads = [None] if gpu else [int(t) for t in str(args.threads).split(",") if t.strip()]
    result: dict = {"machine": (torch.cuda.get_device_name(device) if gpu else
                                f"{platform.machine()}, {os.cpu_count()} cores") + f", torch {torch.__version__}",
                    "device": str(device), "batch_size": args.batch_size, "image_size": 28, "preset": args.preset,
                    "rounds": args.rounds, "seconds": args.seconds, "load_avg_start": round(os.getloadavg()[0], 2)}
    for name in list_models(args.models):
        row = {}
        bench = _Bench(name, args.batch_size, device)
        for t in threads:
            if t is not None:
                torch.set_num_threads(t)
            for bf16 in (False, True) if args.bf16 else (False,):
                prefix = ("gpu" if t is None else f"t{t}") + ("_bf16" if bf16 else "")
                row.update(_columns(bench, aug, args.preset, args.seconds, args.rounds, bf16, prefix))
        result[name] = row
    result["load_avg_end"] = round(os.getloadavg()[0], 2)
    return result
