"""The one checkpoint dict that holds everything a run needs to continue, written atomically.

It holds only tensors and plain Python values, so ``torch.load(weights_only=True)`` reads it.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import os
import random
import shutil
import signal
import threading
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO, Callable, Iterator

import torch
from torch import nn

from ..errors import CheckpointError, UserError
from ..models import load_weights, read_checkpoint
from .ema import WeightAverage

FORMAT = "fishnet-train/1"


@dataclass
class Progress:
    """Where the run is: ``epoch`` is the current (0-based) epoch and ``epoch_step`` the global
    batches of it already trained; ``step`` counts global batches since the start."""

    epoch: int = 0
    epoch_step: int = 0
    step: int = 0
    best_top1: float = -1.0
    best_epoch: int = -1
    # The epoch so far, so that a resumed epoch reports figures over all its steps: the sum of
    # the steps' mean losses over all processes, and the seconds spent training and waiting for data.
    epoch_loss_sum: float = 0.0
    epoch_seconds: float = 0.0
    epoch_data_wait: float = 0.0

    def start_epoch(self, epoch: int) -> None:
        self.epoch, self.epoch_step = epoch, 0
        self.epoch_loss_sum = self.epoch_seconds = self.epoch_data_wait = 0.0


def save_atomic(obj: dict[str, Any], path: str) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename over it.

    A crash or a full disk at any moment leaves the previous file as it was. Ctrl-C during
    the write takes effect once it is done: torch's zip writer, interrupted halfway, raises an
    error of its own that would hide the interrupt.
    """
    write_atomic(path, lambda f: torch.save(obj, f))


def copy_atomic(source: str, path: str) -> None:
    """Make ``path`` a copy of ``source`` (best.pt from last.pt) with ``save_atomic``'s guarantees."""
    def copy(f: BinaryIO) -> None:
        with open(source, "rb") as src:
            shutil.copyfileobj(src, f)

    write_atomic(path, copy)


def write_atomic(path: str, write: Callable[[BinaryIO], object]) -> None:
    """``write(f)`` into a temporary file beside ``path``, fsync, rename over it (see ``save_atomic``)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"  # resume_path clears these if a process dies mid-write
    with _interrupts_deferred():
        try:
            with open(tmp, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as e:
            if os.path.exists(tmp):
                os.remove(tmp)
            what = "the disk is full" if e.errno == errno.ENOSPC else e.strerror or str(e)
            raise UserError(f"could not write {path}: {what}; the previous checkpoint there is intact") from None


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT until the block ends, then raise KeyboardInterrupt (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's generators: the CPU's, Python's and, on a GPU run, its GPU's (a CPU run
    on a machine with GPUs leaves CUDA alone: touching it would start a context on GPU 0)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def training_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    progress: Progress,
    config: dict,
    rng_states: list[dict],
    arch: str | None,
    num_classes: int,
    classes: list[str],
    world_size: int,
    ema: dict[str, Any] | None = None,
    tracking: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint dict; ``rng_states`` holds one entry per rank, ``ema`` is ``WeightAverage.state()``,
    ``tracking`` the tracked runs' ids and marks (``tracking.json``)."""
    return {
        "format": FORMAT,
        "arch": arch,
        "num_classes": num_classes,
        "classes": classes,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "progress": asdict(progress),
        "config": config,
        "rng": rng_states,
        "world_size": world_size,
        "tracking": tracking or {},
        **(ema or {"model_ema": None, "ema_updates": 0}),
    }


def load_training_state(path: str) -> dict[str, Any]:
    state = read_checkpoint(path)
    if state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a fishnet-train training checkpoint; to start from its weights use model.pretrained={path}"
        )
    return state


def check_same_optimizer(state: dict[str, Any], name: str) -> None:
    """Another optimizer cannot go on from the checkpoint's state (its moments and step counts are
    another kind): one clear error, not a KeyError in the first step."""
    config = state.get("config")
    optim = config.get("optim") if isinstance(config, dict) else None
    saved = optim.get("name") if isinstance(optim, dict) else None
    if saved is not None and saved != name:
        raise CheckpointError(
            f"the checkpoint's optimizer state is {saved}'s, but optim.name={name}: set optim.name={saved} to go "
            "on, or start from its weights with model.pretrained=<checkpoint> trainer.resume=null"
        )


def restore_training_state(
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    rank: int,
    world_size: int,
    ema: WeightAverage | None = None,
    device: torch.device = torch.device("cpu"),
) -> Progress:
    """Load model, optimiser, scaler, the EMA weights where both have them and (same world size only)
    this rank's RNG state."""

    load_weights(model, state["model"])
    scales = [group.get("lr_scale", 1.0) for group in optimizer.param_groups]
    try:
        optimizer.load_state_dict(state["optimizer"])
    except ValueError as e:
        raise CheckpointError(
            f"the checkpoint's optimizer state does not fit this run's parameter groups ({e}): "
            "optim.backbone_lr_scale, model.freeze_backbone or optim.decay_norm_and_bias changed since it was saved; "
            "set them back, or start from its weights with model.pretrained=<checkpoint> trainer.resume=null"
        ) from None
    for group, scale in zip(optimizer.param_groups, scales):
        group["lr_scale"] = scale  # the configured rate scale, not the one saved
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    if ema is not None and state.get("model_ema") is not None:
        ema.load_state(state)
    if state.get("world_size") == world_size and rank < len(state["rng"]):
        set_rng_state(state["rng"][rank], device)
    return Progress(**state["progress"])


def keep_epoch_checkpoint(ckpt_dir: str, epoch: int, keep: int, if_missing: bool = False) -> None:
    """Copy last.pt to ``epoch-NNNN.pt`` (epochs counted from 1) and remove all but the newest ``keep`` of
    them: the history ``fishnet-average`` averages. The copy comes first, so a crash between the two
    leaves one too many; a resume calls it ``if_missing``, for a run killed between last.pt and its copy."""
    target = os.path.join(ckpt_dir, f"epoch-{epoch:04d}.pt")
    if if_missing and os.path.exists(target):
        return
    copy_atomic(os.path.join(ckpt_dir, "last.pt"), target)
    history = sorted(glob.glob(os.path.join(ckpt_dir, "epoch-[0-9][0-9][0-9][0-9].pt")))
    for old in history[:-keep]:
        os.remove(old)


NO_RESUME = (None, "", "null", "none")


def check_resume_option(resume: str | None) -> None:
    """``trainer.resume`` is auto, null, or a file that exists."""
    if resume not in NO_RESUME and resume != "auto" and not os.path.isfile(resume):
        raise UserError(f"trainer.resume={resume}: no such file (use auto, null or a checkpoint path)")


def resume_path(resume: str | None, ckpt_dir: str) -> str | None:
    """The checkpoint ``trainer.resume`` names: ``auto`` is the run's own last.pt if there is one."""
    check_resume_option(resume)
    if resume in NO_RESUME:
        return None
    if resume == "auto":
        for stale in glob.glob(os.path.join(ckpt_dir, "*.tmp.*")):
            with contextlib.suppress(OSError):
                os.remove(stale)  # left by a process killed while saving
        last = os.path.join(ckpt_dir, "last.pt")
        return last if os.path.isfile(last) else None
    return resume
