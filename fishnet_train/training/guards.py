"""What a training step checks besides training: non-finite losses and stop signals on any process
(agreed in one all-reduce), a diverged fp16 run, and running out of GPU memory."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from ..errors import UserError
from ..processes.distributed import all_reduce_max
from ..processes.signals import StopRequest
from .checkpoint import Progress


class TrainingStopped(UserError):
    """The run cannot go on (a non-finite loss, say); the last good checkpoint is kept."""


def agree(total: torch.Tensor, stop: StopRequest | None, scaler: torch.amp.GradScaler) -> tuple[bool, bool, float]:
    """(a non-finite loss on some process, a stop signal on some process, the fp16 scale) in one
    all-reduce and one read from the device: the step's only host sync besides DDP's own."""
    device = total.device
    scale = getattr(scaler, "_scale", None) if scaler.is_enabled() else None
    flags = torch.stack([
        torch.isfinite(total).logical_not().float(),
        # A fill on the device: a tensor copied from host memory would wait for the device.
        torch.full((), 1.0 if stop is not None and stop.signum is not None else 0.0, device=device),
        scale.float().reshape(()) if scale is not None else torch.zeros((), device=device),
    ])
    nonfinite, stopping, value = all_reduce_max(flags).tolist()
    return nonfinite > 0, stopping > 0, value


FP16_DIVERGED_STEPS = 20  # the scale halves at each skip: 2^-20 of it is no longer a loss scale


class ScaleWatch:
    """Counts the fp16 gradient scaler's skipped steps in a row (a skip halves the scale)."""

    def __init__(self, nan_policy: str) -> None:
        self.nan_policy, self.last, self.run = nan_policy, 0.0, 0
        self.limit = FP16_DIVERGED_STEPS

    def diverged(self, scale: float, progress: Progress) -> bool:
        self.run = self.run + 1 if 0 < scale < self.last else 0
        self.last = scale
        if self.run < self.limit or self.run % self.limit:
            return False
        if self.nan_policy == "stop":
            raise TrainingStopped(
                f"fp16: the gradient scaler skipped {self.run} steps in a row by step {progress.step + 1} (epoch "
                f"{progress.epoch + 1}, scale now {scale:g}): the run diverged; the last good checkpoint is kept; "
                "lower optim.lr, add schedule.warmup_epochs, or try trainer.amp=bf16")
        return True


@contextlib.contextmanager
def out_of_memory_hint(message: str) -> Iterator[None]:
    """GPU out of memory anywhere inside (preprocessing, forward, backward, the optimiser step,
    validation): ``message``, one line that says what to lower."""
    try:
        yield
    except torch.OutOfMemoryError:
        raise UserError(message) from None


def step_memory_message(batch: int, accum_steps: int) -> str:
    return (f"out of GPU memory at {batch} images per device; keep data.batch_size and raise trainer.accum_steps "
            f"(now {accum_steps}) to split each step into smaller micro-batches")


def eval_memory_message(batch: int) -> str:
    return f"out of GPU memory evaluating {batch} images per device; lower data.eval_batch_size (global)"
