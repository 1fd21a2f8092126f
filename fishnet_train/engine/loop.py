"""One training epoch: a function of the model's parts, the loop's options and a stream of batches."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..config import LossConfig
from ..data import BatchPreprocess, DevicePrefetcher
from ..data.augment import BatchAugment, batch_seed
from ..errors import UserError
from ..models import FishNet
from .checkpoint import Progress
from .distributed import all_reduce_max, all_reduce_mean
from .ema import WeightAverage
from .evaluate import autocast
from .losses import classification_loss
from .optim import LrSchedule, set_lr
from .reporting import Reporter
from .signals import Preempted, StopRequest

StepHook = Callable[[Progress], None]


class TrainingStopped(UserError):
    """The run cannot go on (a non-finite loss, say); the last good checkpoint is kept."""


@dataclass(frozen=True)
class LoopOptions:
    steps_per_epoch: int
    epochs: int
    global_batch: int  # images per optimiser step, over all processes
    accum_steps: int = 1
    amp: str = "none"  # the effective autocast mode (see build.effective_amp)
    lighting: bool = False  # batches carry PCA lighting draws to apply
    loss: LossConfig = LossConfig()
    clip_grad_norm: float | None = None
    nan_policy: str = "stop"
    checkpoint_every_steps: int = 0
    seed: int = 0  # the run's: with the step and micro-batch, it seeds the batch augmentations
    rank: int = 0


@dataclass(frozen=True)
class StepParts:
    model: FishNet  # the plain model, whose state dict is saved
    step_model: nn.Module  # what runs: DDP-wrapped and/or compiled
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: LrSchedule
    preprocess: BatchPreprocess
    device: torch.device
    augment: BatchAugment | None = None  # random erasing, MixUp/CutMix
    ema: WeightAverage | None = None


@dataclass(frozen=True)
class EpochStats:
    loss: float  # mean over the steps run and all processes
    lr: float
    images_per_sec: float
    data_wait: float  # share of the time spent waiting for batches
    steps: int
    skipped: list[str] = field(default_factory=list)  # this process's replaced undecodable files


def train_one_epoch(
    parts: StepParts,
    batches: Iterable,
    progress: Progress,
    loop: LoopOptions,
    *,
    reporter: Reporter | None = None,
    stop: StopRequest | None = None,
    save: Callable[[], None] = lambda: None,
    after_step: StepHook | None = None,
) -> EpochStats:
    """Train from ``progress.epoch_step`` to the end of epoch ``progress.epoch``, advancing ``progress``.

    ``batches`` yields ``(uint8 images, targets, lighting draws, skipped files)`` micro-batches,
    ``accum_steps`` per step. ``save`` writes last.pt: every ``checkpoint_every_steps`` and
    when ``stop`` reports a signal (then ``Preempted`` is raised). ``after_step`` is called
    with the progress after each optimiser step.
    """
    reporter = reporter or Reporter(None, active=False)
    p, device = progress, parts.device
    parts.step_model.train()
    loss_sum = torch.zeros((), device=device)
    first, waited, lr, skipped = p.epoch_step, 0.0, parts.schedule(p.step), []
    stream = DevicePrefetcher(batches, device)
    bar = reporter.bar(range(first, loop.steps_per_epoch), loop.steps_per_epoch - first,
                       f"epoch {p.epoch + 1}/{loop.epochs}")
    started = time.perf_counter()
    for _ in bar:
        lr = parts.schedule(p.step)
        set_lr(parts.optimizer, lr)
        before = time.perf_counter()
        micro_batches = [next(stream) for _ in range(loop.accum_steps)]
        waited += time.perf_counter() - before
        skipped += [name for *_, names in micro_batches for name in names]
        loss = optimizer_step(parts, micro_batches, loop, p)
        if loss is None:
            reporter.warning(f"non-finite loss at step {p.step + 1} (epoch {p.epoch + 1}): step skipped "
                             "(trainer.nan_policy=skip)")
            loss = torch.zeros((), device=device)
        loss_sum += loss
        p.step += 1
        p.epoch_step += 1
        if parts.ema is not None:
            parts.ema.after_step(parts.model, p.step)
        if after_step is not None:
            after_step(p)
        if p.step % 10 == 0:
            rate = (p.epoch_step - first) * loop.global_batch / (time.perf_counter() - started)
            show_progress(bar, reporter, p.step, loss, lr, rate)
        save_if_due(p, loop, stop, save, device)
    elapsed = time.perf_counter() - started
    done = max(1, p.epoch_step - first)
    mean_loss = all_reduce_mean(loss_sum / done).item()
    return EpochStats(mean_loss, lr, done * loop.global_batch / elapsed, waited / elapsed, p.epoch_step - first,
                      skipped)


def show_progress(bar: Iterable, reporter: Reporter, step: int, loss: torch.Tensor, lr: float, rate: float) -> None:
    """The bar's postfix and TensorBoard's step curves, on rank 0 (reading the loss syncs the device)."""
    if hasattr(bar, "set_postfix"):
        value = loss.item()
        bar.set_postfix(loss=f"{value:.3f}", lr=f"{lr:.4g}", img_s=f"{rate:.0f}")
        reporter.scalars({"train/loss": value, "train/lr": lr}, step)


def save_if_due(p: Progress, loop: LoopOptions, stop: StopRequest | None, save: Callable[[], None],
                device: torch.device) -> None:
    """last.pt after a stop signal (then ``Preempted``) or every ``checkpoint_every_steps``
    within the epoch (its end is the trainer's own save)."""
    if stop is not None and stop.should_stop(device):
        save()
        raise Preempted(f"stopped by signal at epoch {p.epoch + 1}, step {p.epoch_step}; last.pt saved")
    every = loop.checkpoint_every_steps
    if every and p.step % every == 0 and p.epoch_step < loop.steps_per_epoch:
        save()


def optimizer_step(parts: StepParts, micro_batches: list, loop: LoopOptions, progress: Progress) -> torch.Tensor | None:
    """One optimiser step over the micro-batches (on the device); returns the step's mean loss,
    or None where a non-finite loss dropped the step (``trainer.nan_policy=skip``)."""
    model, accum = parts.step_model, len(micro_batches)
    ddp = _ddp(model)
    total = torch.zeros((), device=parts.device)
    for i, (images, y, alpha, _) in enumerate(micro_batches):
        x = parts.preprocess(images, alpha if loop.lighting else None)
        if parts.augment is not None:
            # Seeded by the micro-batch's place in the global batch: the same draws on any number of processes.
            x, y = parts.augment(x, y, batch_seed(loop.seed, progress.step, loop.rank * accum + i))
        # Gradients are all-reduced once per step, after the last micro-batch.
        last = i == accum - 1
        sync = ddp.no_sync() if isinstance(ddp, DistributedDataParallel) and not last else contextlib.nullcontext()
        with sync:
            try:
                with autocast(parts.device, loop.amp):
                    loss = classification_loss(model(x), y, loop.loss) / accum
                parts.scaler.scale(loss).backward()
            except torch.OutOfMemoryError:
                raise UserError(
                    f"out of GPU memory at {len(y)} images per device; keep data.batch_size and raise "
                    f"trainer.accum_steps (now {accum}) to split each step into smaller micro-batches"
                ) from None
        total += loss.detach()
    if loop.clip_grad_norm:
        parts.scaler.unscale_(parts.optimizer)
        nn.utils.clip_grad_norm_(parts.model.parameters(), loop.clip_grad_norm)
    # With fp16 the scaler finds non-finite gradients itself and skips the step.
    if not parts.scaler.is_enabled() and not finite_everywhere(total):
        if loop.nan_policy == "stop":
            raise TrainingStopped(
                f"loss became {total.item()} at step {progress.step + 1} (epoch {progress.epoch + 1}); the last "
                "good checkpoint is kept; lower optim.lr, add schedule.warmup_epochs, or set trainer.nan_policy=skip"
            )
        parts.optimizer.zero_grad(set_to_none=True)
        return None
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    parts.optimizer.zero_grad(set_to_none=True)
    return total


def _ddp(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)  # under torch.compile


def finite_everywhere(loss: torch.Tensor) -> bool:
    bad = torch.isfinite(loss).logical_not().float().reshape(1)
    return not bool(all_reduce_max(bad).item())
