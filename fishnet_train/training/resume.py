"""Where a run starts: the state ``trainer.resume`` names, checked against the command, loaded into the parts."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, UserError, naming_option, user_message
from ..processes.distributed import DistInfo, broadcast_object
from ..reporting import Reporter
from .checkpoint import (
    NO_RESUME, Progress, check_same_optimizer, load_training_state, restore_training_state, resume_path,
)
from .ema import WeightAverage

# What a run learns and how it is scored: a resubmission (trainer.resume=auto) must keep these. The rest
# may change between jobs: the processes, the loader, where the data lies and in which format, the logging.
RECIPE = ("model", "data", "optim", "schedule", "loss", "trainer.epochs", "trainer.seed", "trainer.max_steps_per_epoch")
MAY_CHANGE = ("model.pretrained", "model.use_ema", "model.grad_checkpointing", "data.root", "data.format",
              "data.workers", "data.eval_batch_size", "data.index_cache", "data.stage_dir", "data.scan",
              "data.bad_images", "data.train_decode", "data.region_decode")
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
    state = None
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
    path, epoch, epoch_step, refusal = broadcast_object(found)
    if refusal is not None:
        raise CheckpointError(refusal)
    return Start(path, state, epoch, epoch_step)


def check_same_recipe(saved: Any, now: dict[str, Any], run_dir: str) -> None:
    """The first recipe key whose value the command changes, refused in one line."""
    before, after = flat(saved if isinstance(saved, dict) else {}), flat(now)
    for key, value in after.items():
        if key.startswith(RECIPE) and not key.startswith(MAY_CHANGE) and key in before and before[key] != value:
            raise UserError(f"{run_dir} was started with {key}={fmt(before[key])}, this command has "
                            f"{key}={fmt(value)}: a resubmitted run keeps its recipe; set {key}={fmt(before[key])}, "
                            f"or change it deliberately with trainer.resume={run_dir}/checkpoints/last.pt")


def flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}``; lists and tuples compare alike."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def fmt(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def start_line(run_dir: str, start: Start) -> str:
    """The run's first log line: its directory, new or resumed where; for a directory a launcher named, how
    another job continues it."""
    where = os.path.abspath(run_dir)
    line = (f"run directory {where}: resumes epoch {start.epoch + 1}, step {start.epoch_step} of it, from "
            f"{start.path}" if start.path else f"run directory {where}: a new run")
    if os.path.basename(where).startswith(AUTO_NAMED):
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
