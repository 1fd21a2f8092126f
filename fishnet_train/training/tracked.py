"""The training run's side of tracking: which tracked runs it goes on with, what it says of itself once
(the resolved config, the model's size and cost, the processes) and how it ended."""
from __future__ import annotations

import os
from typing import Any

from torch import nn

from ..config import TrainConfig, to_plain
from ..models.complexity import multiply_accumulates
from ..reporting import Reporter
from ..tracking import flat_parameters, open_trackers
from .checkpoint import NO_RESUME


def start_tracking(options: TrainConfig, run_dir: str, reporter: Reporter, saved: dict[str, Any] | None,
                   resumed_step: int, model: nn.Module, facts: dict[str, Any]) -> None:
    """Open the configured loggers on rank 0 (``reporter.active``) and send them the run's parameters.

    ``saved``: the resumed checkpoint's tracking record ({} where ``trainer.resume=auto`` found none; None
    for ``trainer.resume=null``, a fresh start, whose tracked runs are new). A checkpoint of another run
    directory (``trainer.resume=<file>``) starts a branch: new tracked runs, which its requeues go on with.
    ``facts``: what the config does not say (the classes, the processes, the parameter count); ``model``'s
    multiply-accumulates are counted on one image at ``data.train_crop``.
    """
    if not reporter.active or not options.tracking.loggers:
        return
    chosen = options.trainer.resume
    from_file = saved is not None and chosen not in NO_RESUME and chosen != "auto"
    if from_file and not _inside(str(chosen), run_dir):
        saved = {}
    trackers = open_trackers(options.tracking, run_dir, os.path.basename(os.path.normpath(run_dir)),
                             resumed_step, saved, reporter.warning, rewound=from_file)
    crop = options.data.train_crop
    macs = multiply_accumulates(model, (crop, crop))
    params = {**flat_parameters(to_plain(options)), **{f"run.{k}": str(v) for k, v in facts.items()},
              "run.macs": str(macs)}
    trackers.start(params)
    reporter.track(trackers)
    names = ", ".join(options.tracking.loggers)
    ids = {name: entry["run_id"] for name, entry in trackers.record().items()}
    reporter.info(f"tracking to {names}" + "".join(f"; {name} run {run_id}" for name, run_id in ids.items()))


def _inside(path: str, folder: str) -> bool:
    return os.path.abspath(path).startswith(os.path.join(os.path.abspath(folder), ""))


def run_outcome(error: BaseException | None) -> str:
    """How the run ended, as the trackers record it: finished, stopped (exit 75, to be resumed),
    interrupted (Ctrl-C) or failed."""
    from ..processes.signals import Preempted

    if error is None:
        return "finished"
    if isinstance(error, Preempted):
        return "stopped"
    return "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"


def checkpoint_summary(ckpt_dir: str, upload_best: bool, outcome: str) -> tuple[dict[str, str], str | None]:
    """The checkpoints' paths for the tracked run, and best.pt as its artifact when asked and finished."""
    summary = {f"checkpoint.{name}": os.path.abspath(os.path.join(ckpt_dir, f"{name}.pt")) for name in ("last", "best")
               if os.path.isfile(os.path.join(ckpt_dir, f"{name}.pt"))}
    best = summary.get("checkpoint.best")
    return summary, best if upload_best and outcome == "finished" else None
