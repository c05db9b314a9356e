"""`fit()`: one training run, top to bottom.

setup (data -> balance -> model -> optimizer/schedule/EMA/early stopping, all in one TrainState)
-> resume (one load_state_dict) -> epochs (train, validate, decide, checkpoint) -> best weights
-> test once -> done.

Every decision (early stopping, best.pt) looks at the VALIDATION split only; a test split
is evaluated once at the end with the best weights and never steers training.

Determinism: the weights are seeded by `seed`; each epoch's batch order, augmentation and
dropout by (seed, epoch, rank), so a run resumed at an epoch boundary repeats exactly what
the uninterrupted run would have done, and a run stopped mid-epoch keeps every rank's random
streams and the epoch's partial sums in last.pt (charlab.training.state).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from ..checkpoint import ensemble_size, load_checkpoint, read_checkpoint_dict
from ..config import ModelConfig, TrainConfig, from_dict, to_dict
from ..cpu import set_cpu_threads
from ..errors import CheckpointError, DataError
from ..optim import make_optimizer, make_scheduler
from ..runs import DONE, STOPPED, RunDir
from . import distributed
from .callbacks import Checkpointing, EarlyStopping, ModelEMA, StopRequest, TimeBudget
from .loop import EpochBatches, evaluate, on_device, train_one_epoch
from .state import TrainState, stream_seed

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
    from ..runs import RunRecorder

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


@dataclass
class _Run:
    """What the epochs work on, built once by `_setup`."""
    config: TrainConfig
    env: distributed.DistEnv
    device: torch.device
    classes: list[str]
    input_shape: tuple[int, int]
    val: object  # CharDataset or None
    test: object
    notes: list[str]
    state: TrainState
    batches: EpochBatches
    train_model: nn.Module  # the model, wrapped in DistributedDataParallel under torchrun
    loss_fn: nn.Module
    channels_last: bool
    teacher: Optional[nn.Module] = None  # charlab.training.distill.Teacher when config.teacher is set
    val_side: Optional[torch.Tensor] = None  # this rank's float N×G side vectors of val / test (DataConfig.side_inputs)
    test_side: Optional[torch.Tensor] = None


def _fit(config: TrainConfig, rec, run_dir: Optional[Path], env: distributed.DistEnv, device: torch.device,
         splits, progress: Optional[Progress], resume: bool, say: Callable[[str], None],
         callbacks: tuple = ()) -> FitResult:
    r = _setup(config, env, device, splits, progress, run_dir)
    state, stopper = r.state, r.state.stopper
    history = _resume(r, rec, run_dir, say) if resume else []
    ckpt = Checkpointing(rec.best_path if rec else None, rec.last_path if rec else None, config, r.classes,
                         r.input_shape)
    stop_request = StopRequest(rec.stop_path if rec else None)  # RunRecorder cleared a stale one at start
    budget = TimeBudget(config.max_minutes, state.elapsed_s)
    if rec:
        rec.set_elapsed_base(state.elapsed_s)
        rec.update(notes=r.notes, steps_per_epoch=r.batches.steps_per_epoch, world_size=env.world_size,
                   device=str(device))

    reason = "early_stopping" if stopper.should_stop else None
    epoch = state.epoch + 1
    while reason is None and epoch <= config.epochs:
        t_epoch = time.perf_counter()
        sums, steps, total = _train_epoch(r, epoch, progress, callbacks, rec, stop_request)
        if steps < total:  # STOP mid-epoch: last.pt keeps the part done (epoch = epochs completed), then end
            state.stop_within(epoch, steps, sums)
            state.elapsed_s = budget.elapsed()
            ckpt.save(state, history[-1] if history else {})
            say(f"stop requested: stopped in epoch {epoch} after batch {steps}/{total}")
            reason = "stop_request"
            break
        row = _epoch_row(r, epoch, sums, time.perf_counter() - t_epoch, budget.elapsed())
        improved = stopper.update(epoch, row, state.eval_model)
        state.end_epoch(epoch)
        state.elapsed_s = budget.elapsed()
        history.append(row)
        ckpt.save(state, row, improved=improved)
        if rec:
            rec.append(row)
            rec.update(epoch=epoch, best=stopper.best, best_epoch=stopper.best_epoch,
                       best_metrics=_row_of(history, stopper.best_epoch), last_metrics=row, step=0)
        say(_format_row(row, config.epochs, improved))
        for cb in callbacks:
            if hasattr(cb, "on_epoch_end"):
                cb.on_epoch_end(epoch, row)
        reason = _decide(r, epoch, stop_request, callbacks, budget, say)
        epoch += 1
    return _finish(r, reason or "epochs", history, rec, run_dir, ckpt, stop_request, say)


# -- the steps, each small ----------------------------------------------------------------

def _setup(config: TrainConfig, env: distributed.DistEnv, device: torch.device, splits, progress,
           run_dir: Optional[Path]) -> _Run:
    """data -> balance -> model -> optimizer, schedule, EMA, early stopping, loss."""
    from ..balance import get_strategy

    if splits is None:
        from ..data import load_splits

        splits = load_splits(config.data, progress=progress)
    train, val, test = splits.train, splits.val, getattr(splits, "test", None)
    notes = list(getattr(splits, "notes", None) or [])
    if len(train) == 0:
        raise DataError(f"the training split of {config.data.source!r} holds no images")
    classes, input_shape = list(train.classes), tuple(train.images.shape[-2:])
    has_val = val is not None and len(val) > 0

    train, class_weight, note = get_strategy(config.balance).prepare(train, config)
    notes += [note] if note else []
    batches = EpochBatches(train, config, env, device, stream_seed)
    if batches.steps_per_epoch == 0:
        raise DataError(f"{len(train)} training images make no batch for {env.world_size} processes")

    torch.manual_seed(config.seed)
    model = _build_model(config, classes, input_shape, notes)
    model = distributed.sync_batchnorm(model, device).to(device)
    channels_last = CHANNELS_LAST and device.type == "cpu"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    stopper = EarlyStopping(config.monitor, config.mode, config.patience, config.min_delta)
    stopper.check_keys([k for k in TRAIN_KEYS + (VAL_KEYS if has_val else ()) + TAIL_KEYS if k != "epoch"])
    state = TrainState(model, optimizer, make_scheduler(optimizer, config, batches.steps_per_epoch),
                       ModelEMA(model, config.ema_decay) if config.ema_decay > 0 else None, stopper,
                       seed=config.seed, device=device, env=env,
                       best_path=RunDir(run_dir).best if run_dir is not None else None)
    loss_fn = nn.CrossEntropyLoss(weight=class_weight.to(device) if class_weight is not None else None,
                                  label_smoothing=config.label_smoothing)
    teacher = None
    if config.teacher:
        from .distill import DistillationLoss, load_teacher

        with torch.random.fork_rng(devices=[]):  # building its models must not move the run's random streams
            teacher = load_teacher(config.teacher, classes, input_shape, config.data.preprocessing(),
                                   config.distill_temperature, device)
        if channels_last:
            teacher = teacher.to(memory_format=torch.channels_last)
        loss_fn = DistillationLoss(loss_fn, config.distill_weight, config.distill_temperature)
        notes.append(f"distilling {config.teacher} ({len(teacher.members)} model(s)): weight "
                     f"{config.distill_weight}, temperature {config.distill_temperature}")
    train_model = model
    if env.enabled:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    return _Run(config, env, device, classes, input_shape, _shard(val, env, device) if has_val else None,
                _shard(test, env, device), notes, state, batches, train_model, loss_fn, channels_last, teacher,
                val_side=_shard_side(val, env, device) if has_val else None, test_side=_shard_side(test, env, device))


def _shard_side(ds, env: distributed.DistEnv, device: torch.device) -> Optional[torch.Tensor]:
    """This rank's share of an evaluation split's side vectors (float N×G), None without them."""
    if ds is None or len(ds) == 0 or ds.side is None:
        return None
    return on_device(ds.side[env.rank::env.world_size], device)


def _shard(ds, env: distributed.DistEnv, device: torch.device):
    """This rank's share of an evaluation split, where it is evaluated (evaluate all-reduces)."""
    if ds is None or len(ds) == 0:
        return None
    return (on_device(ds.images[env.rank::env.world_size], device), on_device(ds.labels[env.rank::env.world_size], device))


def _resume(r: _Run, rec, run_dir: Optional[Path], say: Callable[[str], None]) -> list[dict]:
    """Continue from last.pt: one load_state_dict; -> the metrics rows of the epochs it holds."""
    if run_dir is None:
        raise CheckpointError("resume needs the run directory that holds last.pt")
    last = RunDir(run_dir).last
    if not last.exists():
        r.notes.append("resume: no last.pt yet, starting from the first epoch")
        if rec:
            rec.prepare_resume(0)
        return []
    r.state.load_state_dict(read_checkpoint_dict(last))
    done, partial = r.state.epoch, r.state.partial
    if rec:
        dropped = rec.prepare_resume(done)
        if dropped:
            r.notes.append(f"resume: dropped {dropped} metrics row(s) newer than last.pt")
    say(f"resuming {run_dir.name} after epoch {done}"
        + (f", batch {partial['steps']} of epoch {partial['epoch']}" if partial else ""))
    from ..runs import read_metrics

    return [row for row in read_metrics(run_dir) if row.get("split", "train") == "train"
            and int(row.get("epoch", 0)) <= done]


def _train_epoch(r: _Run, epoch: int, progress: Optional[Progress], callbacks: tuple, rec,
                 stop_request: StopRequest) -> tuple[torch.Tensor, int, int]:
    """Train one epoch (or its rest, after a mid-epoch stop); -> (sums over ranks and the part
    trained before: loss_sum, correct, n, seconds; batches done; batches in the epoch)."""
    config, state = r.config, r.state
    if r.device.type == "cpu":
        set_cpu_threads(r.env.world_size)  # the machine's load changes during a long run
    start = state.begin_epoch(epoch)
    batches = r.batches(epoch, start)
    steps_per_epoch = r.batches.steps_per_epoch
    done_before = (epoch - 1) * steps_per_epoch + start

    def on_progress(step: int, total: int, msg: str) -> None:
        if progress is not None:
            progress(done_before + step, config.epochs * steps_per_epoch, f"epoch {epoch}/{config.epochs} {msg}")

    def on_batch(step: int) -> None:
        if state.ema is not None:
            state.ema.update(state.model)
        for cb in callbacks:
            if hasattr(cb, "on_batch_end"):
                cb.on_batch_end(state.eval_model)
        if rec:
            rec.note_progress(epoch=epoch - 1, step=start + step, steps=batches.total)

    stats = train_one_epoch(
        r.train_model, batches, state.optimizer, state.scheduler, r.loss_fn,
        augment_cfg=None if config.overfit_batch else config.augment, generator=state.generator, device=r.device,
        channels_last=r.channels_last, progress=on_progress, on_batch=on_batch, bf16=config.bf16, teacher=r.teacher,
        stop_check=lambda: distributed.any_rank(stop_request.requested(), r.device))
    counts = distributed.all_reduce_sum(
        torch.tensor([stats["loss_sum"], stats["correct"], stats["n"]], dtype=torch.float64, device=r.device)).cpu()
    sums = torch.cat([counts, torch.tensor([stats["seconds"]], dtype=torch.float64)])  # this rank's seconds
    return sums + state.carried(epoch), start + stats["steps"], batches.total


def _epoch_row(r: _Run, epoch: int, sums: torch.Tensor, wall_s: float, elapsed_s: float) -> dict:
    """The metrics row of a finished epoch: train sums, validation, lr and timings."""
    loss_sum, correct, n, seconds = sums.tolist()
    row = {"epoch": epoch, "train_loss": loss_sum / n, "train_acc": correct / n}
    if r.val is not None:
        m = evaluate(r.state.eval_model, *r.val, len(r.classes), batch_size=EVAL_BATCH, device=r.device, side=r.val_side,
                     channels_last=r.channels_last, bf16=r.config.bf16)
        row.update(val_loss=m["loss"], val_acc=m["acc"], val_macro_f1=m["macro_f1"])
    carried_s = float(r.state.carried(epoch)[3])  # a resumed epoch's seconds before the stop
    row.update(lr=r.state.optimizer.param_groups[0]["lr"], epoch_seconds=wall_s + carried_s,
               images_per_s=n / seconds if seconds > 0 else None, elapsed_s=elapsed_s)
    return row


def _decide(r: _Run, epoch: int, stop_request: StopRequest, callbacks: tuple, budget: TimeBudget,
            say: Callable[[str], None]) -> Optional[str]:
    """After an epoch: why training ends now, or None to go on."""
    config, stopper = r.config, r.state.stopper
    asked = next((cb for cb in callbacks if getattr(cb, "should_stop", False)), None)
    if distributed.any_rank(stop_request.requested(), r.device):  # a STOP that came with the epoch's last batch
        return "stop_request"
    if asked is not None:
        say(f"stopped after epoch {epoch}: {getattr(asked, 'stop_reason', 'callback')}")
        return getattr(asked, "stop_reason", "callback")
    if stopper.should_stop:
        say(f"early stopping: no {config.monitor} improvement for {stopper.wait} epochs; "
            f"best {stopper.best:.4f} at epoch {stopper.best_epoch}")
        return "early_stopping"
    if distributed.any_rank(budget.should_stop and epoch < config.epochs, r.device):  # ranks' clocks differ
        say(f"time budget of {config.max_minutes} min reached after epoch {epoch}")
        return "time_budget"
    return None


def _finish(r: _Run, reason: str, history: list[dict], rec, run_dir: Optional[Path], ckpt: Checkpointing,
            stop_request: StopRequest, say: Callable[[str], None]) -> FitResult:
    """Best weights back, the test split once, the run marked done or stopped."""
    state, stopper = r.state, r.state.stopper
    model = state.model
    if not stopper.restore(model) and state.ema is not None:
        model.load_state_dict(state.ema.module.state_dict())  # no best epoch to restore: the average is the result
    model.eval()
    test_metrics = None
    if reason != "stop_request" and r.test is not None:
        m = evaluate(model, *r.test, len(r.classes), batch_size=EVAL_BATCH, device=r.device, side=r.test_side,
                     channels_last=r.channels_last, bf16=r.config.bf16)
        test_metrics = {"test_loss": m["loss"], "test_acc": m["acc"], "test_macro_f1": m["macro_f1"], "n": m["n"]}
        say(f"test (best weights, epoch {stopper.best_epoch}): acc {m['acc']:.4f} macro-F1 {m['macro_f1']:.4f} "
            f"on {m['n']} images")
        if rec:
            rec.append({"split": "test", "epoch": stopper.best_epoch, **test_metrics})
    finished = stopper.best_epoch and reason != "stop_request"
    # for best.pt, so wherever a run directory is written (every rank has run_dir, only rank 0 a rec),
    # and on every rank: evaluate all-reduces, so a rank that skipped it would leave the others waiting
    lookalike = _lookalikes(model, r) if finished and r.val is not None and run_dir is not None else None
    if rec and finished:
        # so the checkpoint alone reports its test accuracy and the look-alike groups of its answers
        extra = {"test_metrics": test_metrics} if test_metrics else {}
        if lookalike is not None:
            extra["lookalike"] = lookalike
        if extra:
            ckpt.save_best(model, stopper.best_epoch, _row_of(history, stopper.best_epoch), **extra)
    final = STOPPED if reason == "stop_request" else DONE
    if rec:
        stop_request.clear()
        rec.finish(final, stop_reason=reason, test_metrics=test_metrics)
    if r.channels_last:
        model = model.to(memory_format=torch.contiguous_format)
    return FitResult(model=model, classes=r.classes, input_shape=r.input_shape, history=history, best=stopper.best,
                     best_epoch=stopper.best_epoch, monitor=r.config.monitor, state=final, stop_reason=reason,
                     test_metrics=test_metrics, run_dir=rec.dir if rec else run_dir, notes=r.notes)


def _lookalikes(model: nn.Module, r: _Run) -> dict:
    """charlab.lookalike groups learned from the best weights' confusion on (this rank's share of)
    the validation split, for best.pt: the Draw page and `predict` name look-alike twins together."""
    from ..lookalike import learn

    m = evaluate(model, *r.val, len(r.classes), batch_size=EVAL_BATCH, device=r.device, return_probs=True, side=r.val_side,
                 channels_last=r.channels_last, bf16=r.config.bf16)
    return learn(m["probs"].float().numpy(), r.val[1].cpu().numpy(), r.classes).to_dict()


def init_model_config(path: str | os.PathLike) -> ModelConfig:
    """The architecture a checkpoint was trained with (what --init-from fine-tunes)."""
    return from_dict(TrainConfig, read_checkpoint_dict(path)["config"]).model


def _build_model(config: TrainConfig, classes: list[str], input_shape: tuple[int, int], notes: list[str]) -> nn.Module:
    from ..models import body_parameters, create_model, list_models, model_options, replace_head

    if not config.init_from:
        kwargs = dict(config.model.kwargs)
        if config.model.pretrained:
            kwargs["pretrained"] = config.model.pretrained
        return create_model(config.model.name, num_classes=len(classes), in_chans=1, image_size=input_shape,
                            side_inputs=config.data.side_inputs, side_dropout=config.data.side_dropout, **kwargs)
    ck = load_checkpoint(config.init_from)  # CheckpointError names the file when missing, corrupt or foreign
    if ensemble_size(ck.state) > 1:  # one set of weights to start from: the file's first member
        notes.append(f"init_from {config.init_from} holds an ensemble of {ensemble_size(ck.state)} models; "
                     "training starts from its first member")
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
    theirs_side, ours_side = ck.config.data.side_inputs or None, config.data.side_inputs or None
    if theirs_side != ours_side and theirs_side is not None:
        raise CheckpointError(f"--init-from {config.init_from} has side inputs {theirs_side!r}, this run "
                              f"asks for {ours_side!r}; both must read the same side vector (an image-only "
                              "checkpoint can start a side-input run, not the other way round)")
    if theirs_side and bool(ck.config.data.side_dropout) != bool(config.data.side_dropout):
        raise CheckpointError(f"--init-from {config.init_from} was trained with side_dropout "
                              f"{ck.config.data.side_dropout:g}, this run asks for {config.data.side_dropout:g}: "
                              "an optional side vector has one more input (its present flag); use the same setting")
    model = ck.model
    if ours_side and not theirs_side:  # an image-only body (e.g. pretrained on synthetic glyphs, which have no page)
        if not hasattr(model, "add_side_inputs"):
            raise CheckpointError(f"--init-from {config.init_from}: its {type(model).__name__} cannot take side inputs")
        model.add_side_inputs(ours_side, dropout=config.data.side_dropout)  # new side MLP, new wider head; the body transfers
        if list(ck.classes) != list(classes):
            model = replace_head(model, len(classes)) or model
        notes.append(f"init_from {config.init_from}: body kept, new head for {len(classes)} classes that also reads "
                     f"side inputs {ours_side!r}")
    elif list(ck.classes) != list(classes):
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


def _row_of(history: list[dict], epoch: int) -> Optional[dict]:
    return next((r for r in history if r.get("epoch") == epoch), None)


def _format_row(row: dict, epochs: int, improved: bool) -> str:
    val = (f" | val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f} f1 {row['val_macro_f1']:.4f}"
           if "val_acc" in row else "")
    ips = f"{row['images_per_s']:.0f} img/s" if row.get("images_per_s") else ""
    return (f"epoch {row['epoch']}/{epochs} train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}{val}"
            f" | lr {row['lr']:.2e} {row['epoch_seconds']:.1f}s {ips}{' *' if improved else ''}")
