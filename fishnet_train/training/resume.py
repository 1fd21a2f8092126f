"""Where a run starts: the state ``trainer.resume`` names, checked against the command, loaded into the parts."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, UserError, naming_option, user_message
from ..recipe import check_same_recipe
from ..processes.distributed import DistInfo, broadcast_object
from ..reporting import Reporter
from .checkpoint import (
    NO_RESUME, Progress, check_same_optimizer, load_training_state, restore_training_state, resume_path,
)
from .ema import WeightAverage

AUTO_NAMED = ("slurm-", "torchrun-")  # the run directories a launcher names (cli/common.py)


@dataclass(frozen=True)
class Start:
    """The checkpoint a run resumes from (None: a new run), rank 0's copy of it loaded, and where it stands."""

    path: str | None
    state: dict[str, Any] | None  # rank 0 only
    epoch: int = 0
    epoch_step: int = 0


def find_start(resume_option: str | None, ckpt_dir: str, config: dict[str, Any], info: DistInfo) -> Start:
    """Rank 0 finds and reads the checkpoint and, for ``trainer.resume=auto``, checks that the command keeps
    the run's recipe; every rank gets the verdict, so that all start, or all refuse in the same line."""
    found: tuple[str | None, int, int, str | None] = (None, 0, 0, None)
    state, failure = None, None
    if info.is_main:
        try:
            path = resume_path(resume_option, ckpt_dir)
            if path:
                with naming_option("trainer.resume"):  # also when auto found the run's own last.pt
                    state = load_training_state(path)
                if resume_option == "auto":
                    check_same_recipe(state.get("config"), config, os.path.abspath(os.path.dirname(ckpt_dir)))
                found = (path, state["progress"]["epoch"], state["progress"]["epoch_step"], None)
        except UserError as e:
            found = (None, 0, 0, user_message(e))
        except Exception as e:  # the other ranks must not wait for a broadcast that never comes
            failure = e
            found = (None, 0, 0, f"rank 0 failed reading the checkpoint to resume from ({type(e).__name__}: {e})")
    path, epoch, epoch_step, refusal = broadcast_object(found)
    if failure is not None:
        raise failure
    if refusal is not None:
        raise CheckpointError(refusal)
    return Start(path, state, epoch, epoch_step)


def start_line(run_dir: str, start: Start, named: bool = False) -> str:
    """The run's first log line: its directory, new or resumed where; for an unnamed run in a directory a
    launcher named, how another job continues it."""
    where = os.path.abspath(run_dir)
    line = (f"run directory {where}: resumes epoch {start.epoch + 1}, step {start.epoch_step} of it, from "
            f"{start.path}" if start.path else f"run directory {where}: a new run")
    if not named and os.path.basename(where).startswith(AUTO_NAMED):
        line += f"; to continue it from another job, pass hydra.run.dir={where} (or name runs with name=)"
    return line


def resume(start: Start, resume_option: str | None, model: nn.Module, optimizer: torch.optim.Optimizer,
           optimizer_name: str, scaler: torch.amp.GradScaler, ema: WeightAverage | None, classes: list[str],
           info: DistInfo, reporter: Reporter) -> tuple[Progress, dict[str, Any] | None]:
    """Load the state ``start`` found into the parts; where the run stands, and the tracked runs the
    checkpoint names ({} with none to resume from; None for ``trainer.resume=null``: new tracked runs)."""
    path = start.path
    if not path:
        return Progress(), None if resume_option in NO_RESUME else {}
    if not os.path.isfile(path):
        raise UserError(f"rank {info.rank} cannot see {path}, which rank 0 resumes from: put the run directory on "
                        "a filesystem every node shares (hydra.run.dir=...)")
    with naming_option("trainer.resume"):
        state = start.state if start.state is not None else load_training_state(path)
        check_same_optimizer(state, optimizer_name)
        if resume_option == "auto":
            check_same_classes(state.get("classes"), classes)
        progress = restore_training_state(state, model, optimizer, scaler, info.rank, info.world_size, ema,
                                          info.device)
    if ema is not None and state.get("model_ema") is None:
        reporter.warning(f"{path} has no EMA weights (model.ema_decay was off): the average starts now")
    reporter.keep_epochs(progress.epoch)  # lines of epochs after the checkpoint are written again
    reporter.info(f"resumed from {path} at epoch {progress.epoch + 1}, step {progress.epoch_step} of it")
    tracked = state.get("tracking")
    return progress, tracked if isinstance(tracked, dict) else {}


def check_same_classes(saved: Any, classes: list[str]) -> None:
    """data.root may move (to a local disk, into shards), not change to other classes."""
    if isinstance(saved, list) and saved != list(classes):
        differ = next((f"{a!r} where it had {b!r}" for a, b in zip(classes, saved) if a != b),
                      f"{len(classes)} classes where it had {len(saved)}")
        raise CheckpointError(f"the run was trained on other classes: data.root has {differ}; point data.root at "
                              "the run's data, or start another run (another name=) with model.pretrained=")
