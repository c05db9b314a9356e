"""Training images/s of every zoo model at 28×28, batch augmentation (`strong`) off and on, 2 and 1 threads.

Each measurement runs charlab's own `train_one_epoch` (uint8 batch -> float -> augment ->
forward/backward/AdamW step) on random images for about `--seconds`, after one warm-up
batch. The augmentation column is the cost of doing it in torch on the batch, measured
against no augmentation in the same process; the 1-thread column shows what a busy machine
does to 2 OpenMP threads (see charlab.training.fit.set_cpu_threads).
"""
from __future__ import annotations

import argparse
import platform
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default="*", help="glob over the model names (default: all)")
    p.add_argument("--threads", default="2,1", help="torch CPU thread counts to compare (default 2,1)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per measurement (default 2)")
    p.add_argument("--preset", default="strong", help="augmentation preset for the 'on' column (default strong)")


def _images_per_s(name: str, augment_cfg, batch_size: int, seconds: float) -> float:
    import torch

    from ..models import create_model
    from ..training import Batches, train_one_epoch

    torch.manual_seed(0)
    model = create_model(name, num_classes=62, in_chans=1, image_size=28).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    g = torch.Generator().manual_seed(0)
    n = batch_size * 64
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)  # N×1×28×28
    labels = torch.randint(0, 62, (n,), generator=g)
    deadline = [0.0]

    def run(batches: int, timed: bool) -> dict:
        order = torch.randperm(n, generator=g)
        stop = (lambda: time.perf_counter() > deadline[0]) if timed else None
        return train_one_epoch(model, Batches(images, labels, order, batch_size, limit=batches), opt, None, loss_fn,
                               augment_cfg=augment_cfg, generator=g, device="cpu", channels_last=True,
                               stop_check=stop)

    run(1, timed=False)  # warm-up: oneDNN picks its kernels on the first batch
    deadline[0] = time.perf_counter() + seconds
    out = run(64, timed=True)  # at least one batch, then until the deadline
    return out["n"] / out["seconds"]


def run(args: argparse.Namespace) -> dict:
    """-> {model: {"t2": img/s, "t2_strong": img/s, "t1": ..., "t1_strong": ...}, ...}."""
    import os

    import torch

    from ..augment import get_preset
    from ..models import list_models

    aug = get_preset(args.preset)
    threads = [int(t) for t in str(args.threads).split(",") if t.strip()]
    result: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
                    "batch_size": args.batch_size, "image_size": 28, "preset": args.preset,
                    "load_avg_start": round(os.getloadavg()[0], 2)}
    for name in list_models(args.models):
        row = {}
        for t in threads:
            torch.set_num_threads(t)
            row[f"t{t}"] = round(_images_per_s(name, None, args.batch_size, args.seconds), 1)
            row[f"t{t}_{args.preset}"] = round(_images_per_s(name, aug, args.batch_size, args.seconds), 1)
        result[name] = row
    result["load_avg_end"] = round(os.getloadavg()[0], 2)
    return result
