"""Where a run starts: the state ``trainer.resume`` names, loaded into the run's parts."""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from ..errors import UserError, naming_option
from ..processes.distributed import DistInfo, broadcast_object
from ..reporting import Reporter
from .checkpoint import (
    NO_RESUME, Progress, check_same_optimizer, load_training_state, restore_training_state, resume_path,
)
from .ema import WeightAverage


def resume(resume_option: str | None, ckpt_dir: str, model: nn.Module, optimizer: torch.optim.Optimizer,
           optimizer_name: str, scaler: torch.amp.GradScaler, ema: WeightAverage | None, info: DistInfo,
           reporter: Reporter) -> tuple[Progress, dict[str, Any] | None]:
    """Load the state ``trainer.resume`` names into the parts; where the run stands, and the tracked runs the
    checkpoint names ({} with none to resume from; None for ``trainer.resume=null``: new tracked runs)."""
    # Rank 0 decides, so that ranks which see other files never split into fresh and resumed ones.
    path = broadcast_object(resume_path(resume_option, ckpt_dir) if info.is_main else None)
    if not path:
        return Progress(), None if resume_option in NO_RESUME else {}
    if not os.path.isfile(path):
        raise UserError(f"rank {info.rank} cannot see {path}, which rank 0 resumes from: put the run directory on "
                        "a filesystem every node shares (hydra.run.dir=...)")
    with naming_option("trainer.resume"):  # also when auto found the run's own last.pt
        state = load_training_state(path)
        check_same_optimizer(state, optimizer_name)
        progress = restore_training_state(state, model, optimizer, scaler, info.rank, info.world_size, ema,
                                          info.device)
    if ema is not None and state.get("model_ema") is None:
        reporter.warning(f"{path} has no EMA weights (model.ema_decay was off): the average starts now")
    reporter.keep_epochs(progress.epoch)  # lines of epochs after the checkpoint are written again
    reporter.info(f"resumed from {path} at epoch {progress.epoch + 1}, step {progress.epoch_step} of it")
    tracked = state.get("tracking")
    return progress, tracked if isinstance(tracked, dict) else {}
