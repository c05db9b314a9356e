"""`fit()`: one training run, top to bottom.

validate -> data -> balance -> model -> optimizer/schedule/loss -> callbacks -> (resume)
-> epochs -> restore best -> test once -> done.

Every decision (early stopping, best.pt) looks at the VALIDATION split only; a test split
is evaluated once at the end with the best weights and never steers training.

Determinism: the weights are seeded by `seed`; each epoch's batch order, augmentation and
dropout by (seed, epoch), so a run resumed at an epoch boundary repeats exactly what the
uninterrupted run would have done, and a run stopped mid-epoch stores the few random
states it needs in last.pt.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from ..checkpoint import load_checkpoint, read_checkpoint_dict
from ..config import ModelConfig, TrainConfig, from_dict, to_dict
from ..errors import CheckpointError, DataError
from ..runs import RunDir
from . import distributed
from .callbacks import Checkpointing, EarlyStopping, ModelEMA, StopRequest, TimeBudget, rng_state
from .loop import Batches, evaluate, train_one_epoch

Progress = Callable[[int, int, str], None]

TRAIN_KEYS = ("epoch", "train_loss", "train_acc")
VAL_KEYS = ("val_loss", "val_acc", "val_macro_f1")
TAIL_KEYS = ("lr", "epoch_seconds", "images_per_s", "elapsed_s")
# channels_last gained 3-5% for the small CNNs on this CPU (DESIGN.md, "torch on CPU")
CHANNELS_LAST = True
EVAL_BATCH = 512


@dataclass
class FitResult:
    model: nn.Module  # the best weights (by the monitored val metric), eval mode
    classes: list[str]
    input_shape: tuple[int, int]
    history: list[dict]  # the epoch rows, as in metrics.jsonl
    best: Optional[float]  # best value of the monitored metric
    best_epoch: int
    monitor: str
    state: str  # done | stopped
    stop_reason: str  # epochs | early_stopping | time_budget | stop_request
    test_metrics: Optional[dict] = None  # {test_loss, test_acc, test_macro_f1, n} with the best weights
    run_dir: Optional[Path] = None
    notes: list[str] = field(default_factory=list)


def fit(config: TrainConfig, run_dir: str | os.PathLike | None = None, *, splits=None,
        progress: Optional[Progress] = None, resume: bool = False,
        log: Optional[Callable[[str], None]] = None, callbacks: Sequence = ()) -> FitResult:
    """Train `config`. With `run_dir`, write the run directory as it goes (status with a
    heartbeat, metrics.jsonl, best.pt, last.pt) and obey a STOP file; `resume` continues
    from its last.pt. `splits` (train/val/test CharDatasets) skips loading `config.data`.
    `progress(done, total, message)` is called after every batch, `log(line)` once per epoch.
    `callbacks`: objects with optional `on_batch_end(model)` and `on_epoch_end(epoch, row)`
    hooks and a `should_stop` flag (+ `stop_reason`) that fit obeys after the epoch, as it
    obeys early stopping (the sweep's pruning is one); they decide, fit acts."""
    from ..runs import RunRecorder  # runs imports nothing of training; this keeps it so

    config.validate()
    env = distributed.detect()
    device = distributed.resolve_device(config.device, env)
    distributed.init(env, device)
    if device.type == "cpu":
        set_cpu_threads(env.world_size)
    rec = RunRecorder(run_dir, config, resume=resume) if run_dir is not None and env.is_main else None
    try:
        return _fit(config, rec, Path(run_dir) if run_dir is not None else None, env, device, splits,
                    progress, resume, log or (lambda line: None), tuple(callbacks))
    except BaseException as e:
        if rec is not None:
            rec.fail(e)
        raise


def _fit(config: TrainConfig, rec, run_dir: Optional[Path], env: distributed.DistEnv, device: torch.device,
         splits, progress: Optional[Progress], resume: bool, say: Callable[[str], None],
         callbacks: tuple = ()) -> FitResult:
    # 1. data ------------------------------------------------------------------------
    if splits is None:
        from ..data import load_splits

        splits = load_splits(config.data, progress=progress)
    train, val, test = splits.train, splits.val, getattr(splits, "test", None)
    notes = list(getattr(splits, "notes", None) or [])
    if len(train) == 0:
        raise DataError(f"the training split of {config.data.source!r} holds no images")
    classes, input_shape = list(train.classes), tuple(train.images.shape[-2:])
    has_val = val is not None and len(val) > 0

    # 2. balance ---------------------------------------------------------------------
    train, class_weight = _balance(train, config, notes)

    # 3. model -----------------------------------------------------------------------
    torch.manual_seed(config.seed)
    model = _build_model(config, classes, input_shape, notes).to(device)
    channels_last = CHANNELS_LAST and device.type == "cpu"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    # 4. optimizer, schedule, loss -----------------------------------------------------
    limit = 1 if config.overfit_batch else config.limit_batches

    def epoch_batches(epoch: int, start: int = 0) -> Batches:
        return Batches(train.images, train.labels, _epoch_order(train, config, epoch), config.batch_size,
                       start=start, limit=limit, rank=env.rank, world_size=env.world_size)

    steps_per_epoch = len(epoch_batches(1))
    if steps_per_epoch == 0:
        raise DataError(f"{len(train)} training images make no batch for {env.world_size} processes")
    optimizer = _make_optimizer(model, config)
    scheduler = _make_scheduler(optimizer, config, steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(weight=class_weight.to(device) if class_weight is not None else None,
                                  label_smoothing=config.label_smoothing)
    augment_cfg = None if config.overfit_batch else config.augment
    ema = ModelEMA(model, config.ema_decay) if config.ema_decay > 0 else None
    eval_model = ema.module if ema is not None else model  # what validation, best.pt and the result use

    # 5. callbacks -------------------------------------------------------------------
    stopper = EarlyStopping(config.monitor, config.mode, config.patience, config.min_delta)
    stopper.check_keys([k for k in TRAIN_KEYS + (VAL_KEYS if has_val else ()) + TAIL_KEYS if k != "epoch"])
    ckpt = Checkpointing(rec.best_path, rec.last_path, config, classes, input_shape) if rec else None
    stop_request = StopRequest(rec.stop_path if rec else None)  # RunRecorder cleared a stale one at start

    # 6. resume ----------------------------------------------------------------------
    start_epoch, partial, rng, elapsed_before, history = 1, None, None, 0.0, []
    if resume:
        if run_dir is None:
            raise CheckpointError("resume needs the run directory that holds last.pt")
        state = _read_last(run_dir)
        if state is None:
            notes.append("resume: no last.pt yet, starting from the first epoch")
            if rec:
                rec.prepare_resume(0)
        else:
            getattr(model, "module", model).load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if ema is not None and state.get("ema"):
                ema.load_state_dict(state["ema"])
            if scheduler is not None and state.get("scheduler"):
                scheduler.load_state_dict(state["scheduler"])
            stopper.load_state_dict(state.get("early_stopping") or {})
            if stopper.best_epoch and RunDir(run_dir).best.exists():
                stopper.best_state = read_checkpoint_dict(RunDir(run_dir).best)["model"]
            start_epoch, partial, rng = int(state["epoch"]) + 1, state.get("partial"), state.get("rng")
            elapsed_before = float(state.get("elapsed_s") or 0.0)
            if rec:
                dropped = rec.prepare_resume(int(state["epoch"]))
                if dropped:
                    notes.append(f"resume: dropped {dropped} metrics row(s) newer than last.pt")
            from ..runs import read_metrics

            history = [r for r in read_metrics(run_dir) if r.get("split", "train") == "train"
                       and int(r.get("epoch", 0)) <= int(state["epoch"])]
            say(f"resuming {run_dir.name} after epoch {state['epoch']}"
                + (f", batch {partial['steps']} of epoch {partial['epoch']}" if partial else ""))
    budget = TimeBudget(config.max_minutes, elapsed_before)
    if rec:
        rec.set_elapsed_base(elapsed_before)
        rec.update(notes=notes, steps_per_epoch=steps_per_epoch, world_size=env.world_size, device=str(device))

    train_model = model
    if env.enabled:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)

    # 7. epochs ----------------------------------------------------------------------
    reason = "early_stopping" if stopper.should_stop else None
    epoch = start_epoch
    total_steps = config.epochs * steps_per_epoch
    while reason is None and epoch <= config.epochs:
        t_epoch = time.perf_counter()
        if device.type == "cpu":
            set_cpu_threads(env.world_size)  # the machine's load changes during a long run
        start = int(partial["steps"]) if partial and int(partial["epoch"]) == epoch else 0
        batches = epoch_batches(epoch, start)
        aug_gen = torch.Generator(device=device).manual_seed(_seed(config.seed, epoch, "augment", env.rank))
        torch.manual_seed(_seed(config.seed, epoch, "dropout", env.rank))
        if start and rng:  # mid-epoch resume: continue the random streams where they stopped
            torch.set_rng_state(rng["torch"])
            if "augment" in rng:
                aug_gen.set_state(rng["augment"])
            if device.type == "cuda" and "cuda" in rng:
                torch.cuda.set_rng_state_all(rng["cuda"])
        done_before = (epoch - 1) * steps_per_epoch + start

        def on_progress(step: int, total: int, msg: str, _e=epoch, _d=done_before) -> None:
            if progress is not None:
                progress(_d + step, total_steps, f"epoch {_e}/{config.epochs} {msg}")

        def on_batch(step: int, _e=epoch, _s=start) -> None:
            if ema is not None:
                ema.update(model)
            for cb in callbacks:
                if hasattr(cb, "on_batch_end"):
                    cb.on_batch_end(eval_model)
            if rec:
                rec.note_progress(epoch=_e - 1, step=_s + step, steps=batches.total)

        stats = train_one_epoch(
            train_model, batches, optimizer, scheduler, loss_fn, augment_cfg=augment_cfg, generator=aug_gen,
            device=device, channels_last=channels_last, progress=on_progress, on_batch=on_batch,
            stop_check=lambda: distributed.any_rank(stop_request.requested(), device))
        sums = torch.tensor([stats["loss_sum"], stats["correct"], stats["n"], stats["seconds"]], dtype=torch.float64)
        if start and partial:
            sums += torch.tensor([partial["loss_sum"], partial["correct"], partial["n"], partial["seconds"]],
                                 dtype=torch.float64)
        stopped = stats["stopped"]
        if stopped and start + stats["steps"] < batches.total:
            # STOP mid-epoch: keep the half epoch in last.pt (epoch = epochs completed) and end
            if ckpt:
                ckpt.save_last(model, epoch - 1, history[-1] if history else {}, optimizer=optimizer,
                               scheduler=scheduler, early_stopping=stopper, rng=rng_state(aug_gen),
                               ema=ema.state_dict() if ema is not None else None,
                               elapsed_s=budget.elapsed(), partial={
                                   "epoch": epoch, "steps": start + stats["steps"], "loss_sum": sums[0].item(),
                                   "correct": sums[1].item(), "n": sums[2].item(), "seconds": sums[3].item()})
            reason = "stop_request"
            say(f"stop requested: stopped in epoch {epoch} after batch {start + stats['steps']}/{batches.total}")
            break
        partial = None
        seconds = sums[3].item()
        loss_sum, correct, n = distributed.all_reduce_sum(sums[:3].to(device)).tolist()
        row = {"epoch": epoch, "train_loss": loss_sum / n, "train_acc": correct / n}
        if has_val:
            m = evaluate(eval_model, val.images[env.rank::env.world_size], val.labels[env.rank::env.world_size],
                         len(classes), batch_size=EVAL_BATCH, device=device, channels_last=channels_last)
            row.update(val_loss=m["loss"], val_acc=m["acc"], val_macro_f1=m["macro_f1"])
        row.update(lr=optimizer.param_groups[0]["lr"], epoch_seconds=time.perf_counter() - t_epoch + (
            seconds - stats["seconds"]), images_per_s=n / seconds if seconds > 0 else None, elapsed_s=budget.elapsed())
        improved = stopper.update(epoch, row, eval_model)
        history.append(row)
        if rec:
            rec.append(row)
            if improved:
                ckpt.save_best(eval_model, epoch, row)
            ckpt.save_last(model, epoch, row, optimizer=optimizer, scheduler=scheduler, early_stopping=stopper,
                           rng=rng_state(aug_gen), elapsed_s=budget.elapsed(),
                           ema=ema.state_dict() if ema is not None else None)
            rec.update(epoch=epoch, best=stopper.best, best_epoch=stopper.best_epoch,
                       best_metrics=_row_of(history, stopper.best_epoch), last_metrics=row, step=0)
        say(_format_row(row, config.epochs, improved))
        for cb in callbacks:
            if hasattr(cb, "on_epoch_end"):
                cb.on_epoch_end(epoch, row)
        asked = next((cb for cb in callbacks if getattr(cb, "should_stop", False)), None)
        if stopped:
            reason = "stop_request"
        elif asked is not None:
            reason = getattr(asked, "stop_reason", "callback")
            say(f"stopped after epoch {epoch}: {reason}")
        elif stopper.should_stop:
            reason = "early_stopping"
            say(f"early stopping: no {config.monitor} improvement for {stopper.wait} epochs; "
                f"best {stopper.best:.4f} at epoch {stopper.best_epoch}")
        elif distributed.any_rank(budget.should_stop and epoch < config.epochs, device):  # ranks' clocks differ
            reason = "time_budget"
            say(f"time budget of {config.max_minutes} min reached after epoch {epoch}")
        epoch += 1
    reason = reason or "epochs"

    # 8. best weights, test once, done -------------------------------------------------
    if not stopper.restore(model) and ema is not None:
        model.load_state_dict(ema.module.state_dict())  # no best epoch to restore: the average is the result
    model.eval()
    test_metrics = None
    if reason != "stop_request" and test is not None and len(test) > 0:
        m = evaluate(model, test.images[env.rank::env.world_size], test.labels[env.rank::env.world_size],
                     len(classes), batch_size=EVAL_BATCH, device=device, channels_last=channels_last)
        test_metrics = {"test_loss": m["loss"], "test_acc": m["acc"], "test_macro_f1": m["macro_f1"], "n": m["n"]}
        say(f"test (best weights, epoch {stopper.best_epoch}): acc {m['acc']:.4f} macro-F1 {m['macro_f1']:.4f} "
            f"on {m['n']} images")
        if rec:
            rec.append({"split": "test", "epoch": stopper.best_epoch, **test_metrics})
            if stopper.best_epoch and ckpt:  # so the checkpoint alone reports its test accuracy
                ckpt.save_best(model, stopper.best_epoch, _row_of(history, stopper.best_epoch),
                               test_metrics=test_metrics)
    state = "stopped" if reason == "stop_request" else "done"
    if rec:
        stop_request.clear()
        rec.finish(state, stop_reason=reason, test_metrics=test_metrics)
    if channels_last:
        model = model.to(memory_format=torch.contiguous_format)
    return FitResult(model=model, classes=classes, input_shape=input_shape, history=history, best=stopper.best,
                     best_epoch=stopper.best_epoch, monitor=config.monitor, state=state, stop_reason=reason,
                     test_metrics=test_metrics, run_dir=rec.dir if rec else run_dir, notes=notes)


# -- the steps, each small ----------------------------------------------------------------

def set_cpu_threads(world_size: int = 1) -> int:
    """All cores (split across DDP ranks) on a quiet machine, ONE thread when other
    processes keep the cores busy: measured on the 2-core sandbox at load ~10, LeNet trained
    at 1,770 img/s on 1 thread and 54 img/s on 2, because OpenMP's spinning workers wait on
    a descheduled partner at every op. OMP_NUM_THREADS, when set, wins."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // world_size)
    try:
        others = os.getloadavg()[0] - torch.get_num_threads() * world_size  # load not caused by us
    except OSError:
        others = 0.0
    if threads > 1 and others >= 0.5 * cores:
        threads = 1
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads


def _seed(*parts) -> int:
    """A 63-bit seed from (seed, epoch, stream, rank): independent streams, stable across runs."""
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:15], 16)


def _epoch_order(train, config: TrainConfig, epoch: int) -> torch.Tensor:
    """The indices of one epoch: a permutation, or a class-balanced weighted draw."""
    if config.overfit_batch:
        return torch.arange(len(train))
    g = torch.Generator().manual_seed(_seed(config.seed, epoch, "order"))
    if config.balance == "sampler":
        from ..balance import epoch_indices

        return epoch_indices(train.labels, "sampler", g)
    return torch.randperm(len(train), generator=g)


def _balance(train, config: TrainConfig, notes: list[str]):
    """-> (train, class weights for the loss or None)."""
    if config.balance == "oversample":
        from ..balance import oversample

        before = len(train)
        train = oversample(train, config.balance_target, config.augment, config.seed)
        notes.append(f"oversampled the training split from {before} to {len(train)} images")
    if config.balance == "loss":
        from ..balance import class_weights

        return train, torch.as_tensor(class_weights(train.counts(), config.balance_weights), dtype=torch.float32)
    return train, None


def init_model_config(path: str | os.PathLike) -> ModelConfig:
    """The architecture a checkpoint was trained with (what --init-from fine-tunes)."""
    return from_dict(TrainConfig, read_checkpoint_dict(path)["config"]).model


def _build_model(config: TrainConfig, classes: list[str], input_shape: tuple[int, int], notes: list[str]) -> nn.Module:
    from ..models import body_parameters, create_model, list_models, model_options, replace_head

    if not config.init_from:
        kwargs = dict(config.model.kwargs)
        if config.model.pretrained:
            kwargs["pretrained"] = config.model.pretrained
        return create_model(config.model.name, num_classes=len(classes), in_chans=1, image_size=input_shape, **kwargs)
    ck = load_checkpoint(config.init_from)  # CheckpointError names the file when missing, corrupt or foreign
    ours, theirs = to_dict(config.model), to_dict(ck.config.model)
    for m in (ours, theirs):  # compare options with their defaults filled in (checkpoints store them so)
        m.pop("pretrained", None)
        m["kwargs"] = {**(model_options(m["name"]) if m["name"] in list_models() else {}), **m["kwargs"]}
    if ours != theirs:
        raise CheckpointError(f"--init-from {config.init_from} holds a {theirs['name']} {theirs['kwargs'] or ''}, "
                              f"but this run asks for {ours['name']} {ours['kwargs'] or ''}; "
                              "leave --model out to take the checkpoint's architecture")
    if tuple(ck.input_shape) != tuple(input_shape):
        raise CheckpointError(f"--init-from {config.init_from} was trained on {ck.input_shape[0]}×{ck.input_shape[1]} "
                              f"images, this data is {input_shape[0]}×{input_shape[1]}; "
                              f"use --image-size {ck.input_shape[0]}")
    model = ck.model
    if list(ck.classes) != list(classes):
        model = replace_head(model, len(classes)) or model
        notes.append(f"init_from {config.init_from}: new head for {len(classes)} classes "
                     f"(the checkpoint had {len(ck.classes)})")
    else:
        notes.append(f"init_from {config.init_from}: same {len(classes)} classes, head kept")
    if config.freeze_body:
        for p in body_parameters(model):
            p.requires_grad_(False)
        notes.append("body frozen: only the head trains")
    return model


def _make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def _make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    """Stepped once per batch, over the whole planned run."""
    total = max(1, config.epochs * steps_per_epoch)
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def _read_last(run_dir: Path) -> Optional[dict]:
    p = RunDir(run_dir).last
    return read_checkpoint_dict(p) if p.exists() else None


def _row_of(history: list[dict], epoch: int) -> Optional[dict]:
    return next((r for r in history if r.get("epoch") == epoch), None)


def _format_row(row: dict, epochs: int, improved: bool) -> str:
    val = (f" | val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f} f1 {row['val_macro_f1']:.4f}"
           if "val_acc" in row else "")
    ips = f"{row['images_per_s']:.0f} img/s" if row.get("images_per_s") else ""
    return (f"epoch {row['epoch']}/{epochs} train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}{val}"
            f" | lr {row['lr']:.2e} {row['epoch_seconds']:.1f}s {ips}{' *' if improved else ''}")
