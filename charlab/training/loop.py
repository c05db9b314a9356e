"""`train_one_epoch` and `evaluate` as plain functions (torchvision references style).

Batches are tensor slices of the in-memory uint8 dataset: no DataLoader workers and no
per-sample transforms, because on 2 CPU cores the worker processes and the per-image
Python calls cost more than the model. The batch is converted to float and augmented
in one tensor op right before the forward pass.
"""
from __future__ import annotations

import math
import os
import time
import weakref
from typing import Callable, Iterable, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..cpu import cpu_cores
from ..data.dataset import to_float
from ..errors import CharlabError
from ..metrics import macro_f1
from . import distributed
from .logger import MetricLogger

Progress = Callable[[int, int, str], None]


class Batches:
    """The batches of one epoch: `order` (a permutation or a weighted draw of indices) cut
    into global batches of `batch_size`; under DDP each rank keeps every world-th row of
    each global batch, so all ranks take the same number of optimiser steps.

    `start` skips batches already trained (a run stopped mid-epoch resumes there) and
    `limit` caps the count (the --limit-batches debug mode). With `side` (float N×G side
    vectors, charlab.data.geometry) each batch is (images, labels, side), else (images, labels).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, order: torch.Tensor, batch_size: int, *,
                 start: int = 0, limit: Optional[int] = None, rank: int = 0, world_size: int = 1,
                 side: Optional[torch.Tensor] = None):
        self.images, self.labels, self.order, self.side = images, labels, order, side
        self.batch_size, self.start, self.rank, self.world = batch_size, start, rank, world_size
        # A last batch of fewer than 2 rows per rank is dropped: with none a rank has nothing to
        # train on, and with one a BatchNorm over a batch of one sample refuses to train.
        n = len(order) // batch_size if len(order) % batch_size < 2 * world_size else math.ceil(len(order) / batch_size)
        self.total = min(n, limit) if limit else n

    def __len__(self) -> int:
        return max(self.total - self.start, 0)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for b in range(self.start, self.total):
            idx = self.order[b * self.batch_size:(b + 1) * self.batch_size][self.rank::self.world]
            if self.side is None:
                yield self.images[idx], self.labels[idx]  # uint8 n×1×H×W, int64 n
            else:
                yield self.images[idx], self.labels[idx], self.side[idx]  # … and float32 n×G


def on_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A dataset tensor where its batches are used. On a GPU it moves there once (60,000 28×28
    uint8 images are 47 MB), so batches are indexed on the device and nothing is copied from
    the host per step: pinned memory would have nothing to do. Where it does not fit, it stays
    on the host, pinned, for the non-blocking copy of each batch. On a CPU it stays as it is."""
    if device.type != "cuda" or t.device == device:
        return t
    try:
        return t.to(device)
    except torch.cuda.OutOfMemoryError:
        return t.pin_memory()


class EpochBatches:
    """A run's batches, epoch by epoch: epoch e's order is drawn from (seed, e), by the balancing
    strategy (a permutation, or a class-balanced draw), and cut into `Batches`."""

    def __init__(self, train, config, env, device: torch.device, seed_of: Callable[..., int]):
        from ..balance import get_strategy

        self.images, self.labels = on_device(train.images, device), on_device(train.labels, device)
        self.side = on_device(train.side, device) if train.side is not None else None  # float32 N×G or None
        self.config, self.env, self.seed_of = config, env, seed_of
        self.strategy = get_strategy(config.balance)
        self.limit = 1 if config.overfit_batch else config.limit_batches
        self.steps_per_epoch = len(self(1))

    def order(self, epoch: int) -> torch.Tensor:
        if self.config.overfit_batch:
            return torch.arange(len(self.labels))
        g = torch.Generator().manual_seed(self.seed_of(self.config.seed, epoch, "order"))
        return self.strategy.epoch_indices(self.labels.cpu(), g)  # drawn on the CPU: the same on any device

    def __call__(self, epoch: int, start: int = 0) -> Batches:
        return Batches(self.images, self.labels, self.order(epoch).to(self.images.device), self.config.batch_size,
                       start=start, limit=self.limit, rank=self.env.rank, world_size=self.env.world_size,
                       side=self.side)


def train_augment(x: torch.Tensor, augment_cfg, generator: Optional[torch.Generator]) -> torch.Tensor:
    """augment_batch as the trainer runs it on one batch (identity configs skipped, one thread on a CPU)."""
    if augment_cfg is None or augment_cfg.is_identity():
        return x
    from ..augment import augment_batch  # imported only when used: the trainer runs without it

    threads = torch.get_num_threads()
    if x.device.type != "cpu" or threads == 1:
        return augment_batch(x, augment_cfg, generator)
    # One thread for the augmentation, then back: its ~100 small ops on 64 28×28 images cost more
    # in two-thread OpenMP start-up than they gain (charlab's `strong` on a 64-batch, 2-core CPU:
    # 25.7k img/s on 2 threads against 31.8k on 1 when idle; 22 against 12 ms at load 17).
    torch.set_num_threads(1)
    try:
        return augment_batch(x, augment_cfg, generator)
    finally:
        torch.set_num_threads(threads)


def _augment_on_one_thread(x: torch.Tensor, augment_cfg, generator: Optional[torch.Generator]) -> torch.Tensor:
    torch.set_num_threads(1)  # per OS thread once set: the training thread keeps its own count
    from ..augment import augment_batch

    return augment_batch(to_float(x), augment_cfg, generator)  # uint8 -> float32 N×1×H×W, augmented


def spare_a_thread(model: nn.Module, batch: torch.Tensor, augment_cfg, channels_last: bool = False) -> bool:
    """Whether the step should give one of its threads to the augmentation ahead: yes when the
    step loses less on one thread fewer than the augmentation costs (what it would take from
    the step when sharing the cores). Measured once per (model, batch shape, thread count) on a
    copy of the model: forward and backward at both counts, interleaved, and the augmentation on
    one thread, best of 5 each. Small models gain little from their last OpenMP thread (charnet
    at batch 64 on 2 cores), big ones a lot (a ResNet-18 is 40% slower on 1)."""
    import copy

    from ..augment import augment_batch

    threads = torch.get_num_threads()
    if threads < 2 or os.environ.get("OMP_NUM_THREADS"):  # a thread count the user pinned is kept
        return False
    key = (tuple(batch.shape), threads, channels_last)
    cache = _SPARE.setdefault(model, {})
    if key not in cache:
        probe = copy.deepcopy(getattr(model, "module", model)).train()  # DDP's wrapper does not copy
        x = to_float(batch)  # B×1×H×W
        xs = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        best = {}

        def timed(name, fn):
            start = time.perf_counter()
            fn()
            best[name] = min(best.get(name, math.inf), time.perf_counter() - start)

        from ..models import side_dim

        side = (torch.zeros(len(x), side_dim(probe)),) if side_dim(probe) else ()  # a side-input model's N×G
        with torch.random.fork_rng(devices=[]):  # the probe must not move the run's random streams
            try:
                for round_ in range(6):  # interleaved, so a load spike hits all three; round 0 warms up
                    for t in (threads, threads - 1):
                        torch.set_num_threads(t)
                        timed(t, lambda: probe(xs, *side).float().sum().backward())
                    torch.set_num_threads(1)
                    timed("augment", lambda: augment_batch(x, augment_cfg, None))
                    if round_ == 0:
                        best.clear()
            finally:
                torch.set_num_threads(threads)
        cache[key] = best[threads - 1] - best[threads] < best["augment"]
    return cache[key]


_SPARE: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def _can_augment_ahead(device: torch.device, augment_cfg) -> bool:
    if augment_cfg is None or augment_cfg.is_identity() or device.type != "cpu" or cpu_cores() < 2:
        return False
    # DDP ranks already share the cores one thread each; a thread more per rank would oversubscribe them
    return not (torch.distributed.is_available() and torch.distributed.is_initialized())


def augmented_batches(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device, augment_cfg,
                      generator: Optional[torch.Generator], step_threads: Optional[int] = None
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batches as the model trains on them: float N×1×H×W on `device`, augmented, and labels.

    On a CPU with two or more cores, batch k+1 is augmented on a second thread while batch k
    trains, the step on `step_threads` (default: as many as now). `train_one_epoch` gives the
    step one thread fewer where it loses less by that than the augmentation costs
    (`spare_a_thread`): the augmentation then has a core of its own and is hidden. Otherwise
    the augmentation thread shares the cores; it waits on no OpenMP partner, so it costs about
    what it would in line. Torch ops release the GIL, so a Python thread is enough. The generator is used by that thread alone and in batch order, so the augmented
    stream is the one the in-line path draws; when the epoch stops early, the generator is set
    back to before the batch augmented ahead, so a mid-epoch checkpoint resumes exactly.
    """
    threads = torch.get_num_threads()
    if not _can_augment_ahead(device, augment_cfg):
        for x, y, *side in batches:  # side: [float N×G] for a side-input dataset, else []
            x = to_float(x.to(device, non_blocking=True))  # uint8 -> float32 N×1×H×W in [0, 1]
            yield (train_augment(x, augment_cfg, generator), y.to(device, non_blocking=True),
                   *(s.to(device, non_blocking=True) for s in side))
        return
    from concurrent.futures import ThreadPoolExecutor

    it = iter(batches)
    pool = ThreadPoolExecutor(1, thread_name_prefix="charlab-augment")
    torch.set_num_threads(step_threads or threads)
    pending, before = None, None  # the batch being augmented ahead, and the generator state before it

    def submit():
        nonlocal pending, before
        nxt = next(it, None)
        if nxt is None:
            pending = None
            return
        before = generator.get_state() if generator is not None else None
        pending = (pool.submit(_augment_on_one_thread, nxt[0], augment_cfg, generator), *nxt[1:])

    try:
        submit()
        while pending is not None:
            future, *rest = pending  # rest: labels (and side vectors)
            x = future.result()
            submit()
            yield x, *rest
    finally:
        if pending is not None:  # stopped with one batch augmented ahead: un-draw it
            pending[0].exception()  # waits for it; an error of its own is not raised over the one in flight
            if before is not None:
                generator.set_state(before)
        pool.shutdown(wait=True)
        torch.set_num_threads(threads)  # the worker's set_num_threads(1) also set torch's process-wide default


def _feed(model, batches, device, augment_cfg, generator, channels_last):
    """augmented_batches, with the step's thread count chosen (see spare_a_thread)."""
    threads = torch.get_num_threads()
    if _can_augment_ahead(device, augment_cfg) and isinstance(batches, Batches) and len(batches):
        first = batches.images[batches.order[:batches.batch_size]]  # uint8 B×1×H×W, the shape the steps take
        if spare_a_thread(model, first, augment_cfg, channels_last):
            return augmented_batches(batches, device, augment_cfg, generator, step_threads=threads - 1)
    return augmented_batches(batches, device, augment_cfg, generator)


def train_one_epoch(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    optimizer: torch.optim.Optimizer, scheduler, loss_fn: Callable, *, augment_cfg,
                    generator: Optional[torch.Generator], device: torch.device | str,
                    stop_check: Optional[Callable[[], bool]] = None, progress: Optional[Progress] = None,
                    channels_last: bool = False, on_batch: Optional[Callable[[int], None]] = None,
                    bf16: bool = False, teacher: Optional[nn.Module] = None) -> dict:
    """One pass over `batches`; returns exact sums (loss_sum, correct, n, steps, seconds),
    their means (loss, acc), images_per_s, and `stopped` when `stop_check()` asked to end
    early (checked after every batch, so the batch in flight always completes).

    Train loss and accuracy are measured on the augmented batches, as trained. `bf16` runs
    the forward pass under bfloat16 autocast (weights and optimizer stay float32). With a
    `teacher` (charlab.training.distill), its soft target on the same augmented batch is the
    third argument of `loss_fn`.
    """
    device = torch.device(device)
    model.train()
    for m in model.modules():
        # A frozen body (fine-tuning with freeze_body) keeps its BatchNorm statistics too:
        # updating running means under new data would change the features the head learns on.
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None and not m.weight.requires_grad:
            m.eval()
    total = len(batches) if hasattr(batches, "__len__") else 0
    log = MetricLogger(window=20)
    loss_sum, correct, n, steps, stopped = 0.0, 0, 0, 0, False
    t0 = time.perf_counter()
    feed = _feed(model, batches, device, augment_cfg, generator, channels_last)
    try:
        for x, y, *side in feed:  # side: [float N×G] for a side-input model's data, else []
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(x, *side).float()  # N×C
                soft = teacher(x, *side) if teacher is not None else None  # N×C probabilities, no grad
            loss = loss_fn(logits, y) if soft is None else loss_fn(logits, y, soft)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            batch_loss = loss.item()
            if not math.isfinite(batch_loss):
                raise CharlabError(f"the training loss became {batch_loss} at batch {steps + 1}; "
                                   "lower the learning rate (--lr) or check the data")
            bs = len(y)
            batch_correct = int((logits.argmax(1) == y).sum())
            loss_sum += batch_loss * bs
            correct += batch_correct
            n += bs
            steps += 1
            log.update(loss=batch_loss, acc=batch_correct / bs)
            if on_batch is not None:
                on_batch(steps)
            if progress is not None:
                progress(steps, total, str(log))
            if stop_check is not None and stop_check():
                stopped = True
                break
    finally:  # now, not at garbage collection: a batch augmented ahead is un-drawn before any checkpoint
        feed.close()
    seconds = time.perf_counter() - t0
    return {"loss_sum": loss_sum, "correct": correct, "n": n, "steps": steps, "seconds": seconds,
            "loss": loss_sum / n if n else float("nan"), "acc": correct / n if n else float("nan"),
            "images_per_s": n / seconds if seconds > 0 else float("nan"), "stopped": stopped}


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
             batch_size: int = 512, device: torch.device | str = "cpu", return_probs: bool = False,
             channels_last: bool = False, bf16: bool = False, side: Optional[torch.Tensor] = None) -> dict:
    """Loss (plain cross-entropy: no smoothing or class weights, so runs with different
    recipes compare), accuracy and macro-F1 of `model` on uint8 `images` (and their float N×G
    `side` vectors, for a side-input model).

    Under DDP pass each rank its own shard: the loss sum and the confusion matrix are
    all-reduced, so every rank returns the metrics of the whole split. `probs` (N×C, CPU)
    is returned on request, for this rank's images only.
    """
    model.eval()
    device = torch.device(device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    cm = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)  # flattened C×C
    probs = []
    for i in range(0, len(labels), batch_size):
        x = to_float(images[i:i + batch_size].to(device))  # N×1×H×W
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = labels[i:i + batch_size].to(device)
        extra = () if side is None else (side[i:i + batch_size].to(device),)  # float B×G
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x, *extra).float()  # N×C
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        cm += torch.bincount(y * num_classes + logits.argmax(1), minlength=num_classes * num_classes)
        if return_probs:
            probs.append(logits.softmax(1).cpu())
    n = torch.tensor(float(len(labels)), dtype=torch.float64, device=device)
    stats = distributed.all_reduce_sum(torch.cat([loss_sum.view(1), n.view(1), cm.double()]))
    loss_sum, n, cm = stats[0].item(), stats[1].item(), stats[2:].round().long().cpu().numpy()
    # expand the confusion counts back into (true, pred) pairs so macro-F1 has one definition: charlab.metrics
    pairs = np.repeat(np.arange(num_classes * num_classes), cm)
    out = {"loss": loss_sum / n if n else float("nan"),
           "acc": float(cm.reshape(num_classes, num_classes).trace() / n) if n else float("nan"),
           "macro_f1": macro_f1(pairs // num_classes, pairs % num_classes, num_classes) if n else float("nan"),
           "n": int(n)}
    if return_probs:
        out["probs"] = torch.cat(probs) if probs else torch.zeros(0, num_classes)
    return out
