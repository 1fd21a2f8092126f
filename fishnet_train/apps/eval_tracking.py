"""fishnet-eval's results for the trackers (``tracking.loggers``): added to the tracked run of the training
run that wrote the checkpoint (``eval.tracked_run=same``, the default), or as a tracked run of their own."""
from __future__ import annotations

import os
from typing import Any

from ..config import EvalConfig, to_plain
from ..reporting import Reporter
from ..tracking import flat_parameters, open_trackers
from .trained_model import LoadedCheckpoint


def track_results(options: EvalConfig, run_dir: str, ckpt: LoadedCheckpoint, figures: dict[str, Any],
                  reporter: Reporter) -> None:
    """``eval/<set>/<figure>`` at the checkpoint's step (0 for released files), on rank 0; the set is
    ``data.root``'s folder name."""
    t = options.tracking
    if not reporter.active or not t.loggers:
        return
    same = options.eval.tracked_run == "same" and bool(ckpt.tracking)
    trackers = open_trackers(t, run_dir, os.path.basename(os.path.normpath(run_dir)), ckpt.step,
                             ckpt.tracking if same else None, reporter.warning, adding=same)
    trackers.start({} if same else flat_parameters(to_plain(options)))
    reporter.track(trackers)
    numbers = {f"eval/{set_name(options)}/{k}": float(v) for k, v in figures.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    reporter.scalars(numbers, ckpt.step, series="eval")


def results_summary(options: EvalConfig) -> dict[str, str]:
    return {f"eval.{set_name(options)}.checkpoint": os.path.abspath(options.checkpoint)}


def set_name(options: EvalConfig) -> str:
    """The evaluated set, as the trackers name it: ``data.root``'s folder name."""
    return os.path.basename(os.path.normpath(options.data.root))
