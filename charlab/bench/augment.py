"""Augmentation: charlab's batched augment_batch against a per-sample torchvision.transforms.v2 pipeline.

Two figures, measured in the same run:
- throughput: augmented images/s of `augment_batch` on whole batches in the training process,
  against an equivalent torchvision.transforms.v2 pipeline applied per sample in a DataLoader
  with worker processes (the usual way, and the usual bottleneck on a 2-core machine);
- training overhead: training steps (forward, backward, optimizer) through the trainer's own
  `train_one_epoch`, augmenting as it does (the next batch on a second thread beside the step), of the default recipe's model (`charnet`) at its
  batch size (64), against the same steps without augmentation, at 2 threads and at 1 (fit()
  drops to one thread when other processes keep the cores busy).

Timings are steady state (workers started and warm, a few warm-up steps first); the training
steps with and without augmentation are interleaved so background load hits both alike.
On a machine loaded by other processes, libgomp's spin-waiting makes every two-thread op wait
for a descheduled thread: run with GOMP_SPINCOUNT=0 (or OMP_WAIT_POLICY=PASSIVE) set before
Python starts to see the figures without that effect; the JSON records both variables.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F


ROUND_STEPS = 10  # training steps per timed round (one short epoch through train_one_epoch)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="strong", help="augmentation preset (default strong)")
    p.add_argument("--size", type=int, default=28, help="image side in pixels (default 28)")
    p.add_argument("--batch", type=int, default=64, help="batch size (default 64, the default recipe's)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the training process (default 2)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the torchvision pipeline (default 2)")
    p.add_argument("--images", type=int, default=4096, help="images per throughput measurement (default 4096)")
    p.add_argument("--steps", type=int, default=40, help="timed training steps each way (default 40)")
    p.add_argument("--model", default="charnet", help="model of the training-step figure (default charnet, the default "
                   "recipe's)")
    p.add_argument("--step-threads", default="2,1", help="thread counts of the training-step figure (default 2,1)")


def _ink_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """uint8 n×1×S×S strokes (random bars and rings); the timings do not depend on the content."""
    g = torch.Generator().manual_seed(seed)
    c = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    p = torch.rand(n, 4, generator=g)
    cy, cx = (0.3 + 0.4 * p[:, 0]) * size, (0.3 + 0.4 * p[:, 1]) * size
    r = (0.15 + 0.15 * p[:, 2]) * size
    dist = ((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2).sqrt()
    ring = (dist - r[:, None, None]).abs() < size / 14
    bar = ((xx - cx[:, None, None]).abs() < size / 14) & (p[:, 3, None, None] > 0.5)
    return ((ring | bar).float() * 255).to(torch.uint8)[:, None]


def _stroke_per_sample(x: torch.Tensor) -> torch.Tensor:
    # torchvision has no stroke-width transform; this is what a per-sample pipeline would add
    return F.max_pool2d(x[None], 3, 1, 1)[0]


def torchvision_pipeline(cfg):
    """The closest torchvision.transforms.v2 per-sample pipeline to an AugmentConfig. Rotation,
    shear, zoom and shift go in ONE RandomAffine (one warp, torchvision's fastest way)."""
    import math

    from ..compat import tv_transforms_v2

    v2 = tv_transforms_v2()
    shear = [math.degrees(math.atan(v)) for v in (*cfg.shear_x, *cfg.shear_y)]
    ops = [v2.ToDtype(torch.float32, scale=True)]
    if cfg.stroke_p > 0:
        ops.append(v2.RandomApply([v2.Lambda(_stroke_per_sample)], p=cfg.stroke_p))
    geo_p = 1 - (1 - cfg.rotate_p) * (1 - cfg.shear_p) * (1 - cfg.scale_p) * (1 - cfg.shift_p)
    if geo_p > 0:
        ops.append(v2.RandomApply([v2.RandomAffine(degrees=tuple(cfg.rotate), translate=(cfg.shift, cfg.shift),
                                                   scale=tuple(cfg.scale), shear=shear)], p=geo_p))
    if cfg.perspective_p > 0:
        ops.append(v2.RandomPerspective(distortion_scale=2 * cfg.perspective, p=cfg.perspective_p))
    if cfg.elastic_p > 0:
        ops.append(v2.RandomApply([v2.ElasticTransform(alpha=30.0, sigma=cfg.elastic_sigma)], p=cfg.elastic_p))
    if cfg.blur_p > 0:
        ops.append(v2.RandomApply([v2.GaussianBlur(5, sigma=tuple(cfg.blur_sigma))], p=cfg.blur_p))
    if cfg.noise_p > 0:
        ops.append(v2.RandomApply([v2.GaussianNoise(sigma=cfg.noise_std)], p=cfg.noise_p))
    if cfg.erase_p > 0:
        ops.append(v2.RandomErasing(p=cfg.erase_p, scale=tuple(cfg.erase_frac)))
    return v2.Compose(ops)


class _TransformedImages(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor, transform):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.images[i])


def _torchvision_img_s(images: torch.Tensor, cfg, batch: int, workers: int) -> float:
    loader = torch.utils.data.DataLoader(_TransformedImages(images, torchvision_pipeline(cfg)), batch_size=batch,
                                         num_workers=workers, persistent_workers=workers > 0, shuffle=False)
    for _ in loader:  # warm-up pass: workers started, imports done
        pass
    t = time.perf_counter()
    n = sum(len(b) for b in loader)
    return n / (time.perf_counter() - t)


def _charlab_img_s(images: torch.Tensor, cfg, batch: int) -> float:
    from ..augment import augment_batch
    from ..data.dataset import to_float

    g = torch.Generator().manual_seed(0)
    augment_batch(to_float(images[:batch]), cfg, g)  # warm-up
    t = time.perf_counter()
    n = 0
    for i in range(0, len(images), batch):
        n += len(augment_batch(to_float(images[i : i + batch]), cfg, g))
    return n / (time.perf_counter() - t)


def _train_steps(model_name: str, images: torch.Tensor, cfg, steps: int, batch: int) -> dict:
    """Per-step wall and CPU time of the trainer's own epoch loop (`training.loop.train_one_epoch`,
    augmenting as it does) without and with augmentation: rounds of ROUND_STEPS steps each way,
    interleaved, medians over the rounds; and augment_batch alone, on one thread."""
    from ..augment import augment_batch
    from ..data.dataset import to_float
    from ..models import create_model
    from ..training.loop import Batches, train_one_epoch

    torch.manual_seed(0)
    model = create_model(model_name, num_classes=62, image_size=images.shape[-1]).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    labels = torch.randint(0, 62, (len(images),), generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    order = torch.arange(len(images))
    per_round = min(ROUND_STEPS, max(1, len(images) // batch))

    def epoch(augment: bool) -> tuple[float, float]:
        t, c = time.perf_counter(), time.process_time()
        train_one_epoch(model, Batches(images, labels, order, batch, limit=per_round), opt, None, F.cross_entropy,
                        augment_cfg=cfg if augment else None, generator=g, device="cpu", channels_last=True)
        return (time.perf_counter() - t) / per_round, (time.process_time() - c) / per_round

    def aug_only() -> tuple[float, float]:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        t, c = time.perf_counter(), time.process_time()
        augment_batch(to_float(images[:batch]), cfg, g)
        out = time.perf_counter() - t, time.process_time() - c
        torch.set_num_threads(threads)
        return out

    epoch(False), epoch(True)  # warm-up
    plain, aug, alone = [], [], []
    for _ in range(max(1, steps // per_round)):  # interleaved, so load from other processes hits both alike
        plain.append(epoch(False))
        aug.append(epoch(True))
        alone.append(aug_only())
    out = {}
    # wall: what a user waits on an idle machine; CPU: this process's work over all its threads,
    # which other processes' load hardly moves (with GOMP_SPINCOUNT=0 a waiting OpenMP thread burns
    # no CPU). With two threads the trainer augments the next batch beside the step, so the
    # augmentation shows in CPU time but hardly on the wall clock.
    for i, clock in ((0, ""), (1, "_cpu")):
        p, a, o = (statistics.median(v[i] for v in vs) for vs in (plain, aug, alone))
        out.update({f"train_step{clock}_ms": 1000 * p, f"train_step_aug{clock}_ms": 1000 * a,
                    f"augment_batch{clock}_ms": 1000 * o, f"train_overhead{clock}": a / p - 1,
                    f"train_overhead_from_augment{clock}_ms": o / p})
    return out


def run(args: argparse.Namespace) -> dict:
    from ..augment import get_preset

    cfg = get_preset(args.preset)
    torch.set_num_threads(args.threads)
    images = _ink_images(args.images, args.size)
    tv = _torchvision_img_s(images, cfg, args.batch, args.workers)
    ours = _charlab_img_s(images, cfg, args.batch)
    # The same at one thread: on a loaded machine two-thread OpenMP regions wait on descheduled
    # threads while the single-threaded workers of the baseline do not; this shows that effect.
    torch.set_num_threads(1)
    ours_1t = _charlab_img_s(images, cfg, args.batch)
    train = {}
    for t in [int(v) for v in str(args.step_threads).split(",") if v.strip()]:
        torch.set_num_threads(t)
        step = _train_steps(args.model, images, cfg, args.steps, args.batch)
        train.update({(k if t == args.threads else f"{k}_{t}thread"): v for k, v in step.items()})
    torch.set_num_threads(args.threads)
    return {
        "preset": args.preset, "image_size": args.size, "batch": args.batch, "threads": args.threads,
        "workers": args.workers, "images": args.images,
        "charlab_img_s": round(ours, 1), "torchvision_img_s": round(tv, 1), "ratio": round(ours / tv, 2),
        "charlab_img_s_1thread": round(ours_1t, 1), "ratio_1thread": round(ours_1t / tv, 2),
        **{k: round(v, 4 if "overhead" in k else 2) for k, v in train.items()},
        "model": args.model, "cpu_count": os.cpu_count(), "machine": platform.machine(), "torch": torch.__version__,
        "loadavg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        # libgomp's spin-waiting decides two-thread timings on a loaded machine (see BENCHMARKS.md)
        "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT"), "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
    }
