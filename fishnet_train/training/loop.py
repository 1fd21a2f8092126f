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
from ..models import Network
from ..processes.distributed import all_reduce_mean
from ..processes.signals import Preempted, StopRequest
from ..reporting import Reporter
from .checkpoint import Progress
from .ema import WeightAverage
from .evaluate import autocast
from .guards import (
    ScaleWatch, TrainingStopped, agree, out_of_memory_hint, step_memory_message,
)
from .losses import classification_loss
from .optim import LrSchedule, set_lr

StepHook = Callable[[Progress], None]


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
    track_every_steps: int = 50  # the trackers' per-step points: loss, lr, images/s


@dataclass(frozen=True)
class StepParts:
    model: Network  # the plain model, whose state dict is saved
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
    epoch = EpochAccount(p, device)
    # The rate of the epoch's last step so far: what an epoch resumed after its last step reports.
    lr, skipped, scales = parts.schedule(max(p.step - 1, 0)), [], ScaleWatch(loop.nan_policy)
    stream = DevicePrefetcher(batches, device)
    bar = reporter.bar(range(p.epoch_step, loop.steps_per_epoch), loop.steps_per_epoch - p.epoch_step,
                       f"epoch {p.epoch + 1}/{loop.epochs}")
    for _ in bar:
        if stop is not None:
            stop.raise_if_interrupted()
        lr = parts.schedule(p.step)
        set_lr(parts.optimizer, lr)
        before = time.perf_counter()
        micro_batches = [next(stream) for _ in range(loop.accum_steps)]
        epoch.waited += time.perf_counter() - before
        skipped += [name for *_, names in micro_batches for name in names]
        with out_of_memory_hint(step_memory_message(len(micro_batches[0][1]), loop.accum_steps)):
            outcome = optimizer_step(parts, micro_batches, loop, p, stop)
        warn_of_skips(reporter, outcome, scales, p)
        epoch.add(outcome.loss)
        p.step += 1
        p.epoch_step += 1
        if parts.ema is not None:
            parts.ema.after_step(parts.model, p.step)
        if after_step is not None:
            after_step(p)
        if p.step % 10 == 0 or bar_wants_line(bar):
            show_progress(bar, p.step, outcome.loss, lr, epoch.rate(loop.global_batch), epoch.wait_share())
        if p.step % loop.track_every_steps == 0:
            track_step(reporter, p.step, outcome.loss, lr, epoch.interval_rate(loop.global_batch))
        save_if_due(p, loop, outcome.stop, epoch.carry, save)
    epoch.carry()
    return epoch.stats(lr, loop.global_batch, skipped)


def warn_of_skips(reporter: Reporter, outcome: StepOutcome, scales: ScaleWatch, p: Progress) -> None:
    """Steps dropped for a non-finite loss, a diverged fp16 run (``trainer.nan_policy=skip``; ``stop`` raises)."""
    if outcome.loss is None:
        reporter.warning(f"non-finite loss at step {p.step + 1} (epoch {p.epoch + 1}): step skipped "
                         "(trainer.nan_policy=skip)")
    if scales.diverged(outcome.scale, p):
        reporter.warning(f"fp16: the gradient scaler skipped {scales.limit} steps in a row by step "
                         f"{p.step + 1}: the run has diverged (trainer.nan_policy=skip goes on)")


class EpochAccount:
    """The epoch's loss sum, time and data wait since this process started it (or resumed it), and
    ``carry`` to fold them into ``progress`` (which a checkpoint saves, so a resumed epoch's
    figures cover all of its steps)."""

    def __init__(self, progress: Progress, device: torch.device) -> None:
        self.p, self.first = progress, progress.epoch_step
        self.loss_sum = torch.zeros((), device=device)
        self.started, self.waited = time.perf_counter(), 0.0
        self.steps = 0
        self.interval_start = (self.started, progress.epoch_step)
        self._carried = (progress.epoch_loss_sum, progress.epoch_seconds, progress.epoch_data_wait)

    def add(self, loss: torch.Tensor | None) -> None:
        if loss is not None:
            self.loss_sum += loss
        self.steps += 1

    def rate(self, global_batch: int) -> float:
        seconds = self._carried[1] + time.perf_counter() - self.started
        return self.p.epoch_step * global_batch / max(seconds, 1e-9)

    def interval_rate(self, global_batch: int) -> float:
        """Images per second since the last call (or since this process began the epoch)."""
        now, (since, first_step) = time.perf_counter(), self.interval_start
        self.interval_start = (now, self.p.epoch_step)
        return (self.p.epoch_step - first_step) * global_batch / max(now - since, 1e-9)

    def wait_share(self) -> float:
        seconds = self._carried[1] + time.perf_counter() - self.started
        return (self._carried[2] + self.waited) / max(seconds, 1e-9)

    def stats(self, lr: float, global_batch: int, skipped: list[str]) -> EpochStats:
        """The whole epoch's figures, once ``carry`` has run after its last step."""
        p, seconds = self.p, max(self.p.epoch_seconds, 1e-9)
        return EpochStats(p.epoch_loss_sum / max(1, p.epoch_step), lr, p.epoch_step * global_batch / seconds,
                          p.epoch_data_wait / seconds, self.steps, skipped)

    def carry(self) -> None:
        """Every process calls it at the same step (it averages the loss over them)."""
        loss, seconds, wait = self._carried
        self.p.epoch_loss_sum = loss + all_reduce_mean(self.loss_sum.clone()).item()
        self.p.epoch_seconds = seconds + time.perf_counter() - self.started
        self.p.epoch_data_wait = wait + self.waited


def bar_wants_line(bar: Iterable) -> bool:
    return bool(getattr(bar, "line_due", False))


def show_progress(bar: Iterable, step: int, loss: torch.Tensor | None, lr: float, rate: float,
                  data_wait: float) -> None:
    """The bar's postfix, on rank 0 (reading the loss syncs the device)."""
    if hasattr(bar, "set_postfix"):
        value = loss.item() if loss is not None else float("nan")
        bar.set_postfix(step=step, loss=f"{value:.3f}", lr=f"{lr:.4g}", img_s=f"{rate:.0f}",
                        data_wait=f"{100 * data_wait:.0f}%")


def track_step(reporter: Reporter, step: int, loss: torch.Tensor | None, lr: float, rate: float) -> None:
    """The trackers' per-step points, every ``track_every_steps`` steps whatever the time (rank 0 only: the
    loss is read, and the device synced, only where someone logs it). A skipped step has no loss point."""
    if reporter.active:
        values = {"train/lr": lr, "train/images_per_sec": rate}
        if loss is not None:
            values["train/loss"] = loss.item()
        reporter.scalars(values, step)


def save_if_due(p: Progress, loop: LoopOptions, stopping: bool, carry: Callable[[], None],
                save: Callable[[], None]) -> None:
    """last.pt, with the epoch's figures so far (``carry``), after a stop signal (then ``Preempted``)
    or every ``checkpoint_every_steps`` within the epoch (its end is the trainer's own save)."""
    every = loop.checkpoint_every_steps
    if stopping or (every and p.step % every == 0 and p.epoch_step < loop.steps_per_epoch):
        carry()
        save()
    if stopping:
        raise Preempted(f"stopped by signal at epoch {p.epoch + 1}, step {p.epoch_step}; last.pt saved")


@dataclass(frozen=True)
class StepOutcome:
    loss: torch.Tensor | None  # the step's mean loss on the device; None where a non-finite loss dropped it
    stop: bool  # some process got a stop signal: save and stop after this step
    scale: float  # the fp16 loss scale the step ran with (0 without fp16)


def optimizer_step(parts: StepParts, micro_batches: list, loop: LoopOptions, progress: Progress,
                   stop: StopRequest | None = None) -> StepOutcome:
    """One optimiser step over the micro-batches (on the device), with one host sync: whether
    any process has a non-finite loss (``trainer.nan_policy``) or a stop signal."""
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
            with autocast(parts.device, loop.amp):
                loss = classification_loss(model(x), y, loop.loss) / accum
            parts.scaler.scale(loss).backward()
        total += loss.detach()
    if loop.clip_grad_norm:
        parts.scaler.unscale_(parts.optimizer)
        nn.utils.clip_grad_norm_(parts.model.parameters(), loop.clip_grad_norm)
    nonfinite, stopping, scale = agree(total, stop, parts.scaler)
    # With fp16 the scaler finds non-finite gradients itself and skips the step.
    if not parts.scaler.is_enabled() and nonfinite:
        if loop.nan_policy == "stop":
            raise TrainingStopped(
                f"loss became {total.item()} at step {progress.step + 1} (epoch {progress.epoch + 1}); the last "
                "good checkpoint is kept; lower optim.lr, add schedule.warmup_epochs, or set trainer.nan_policy=skip"
            )
        parts.optimizer.zero_grad(set_to_none=True)
        return StepOutcome(None, stopping, scale)
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    parts.optimizer.zero_grad(set_to_none=True)
    return StepOutcome(total, stopping, scale)


def _ddp(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)  # under torch.compile
