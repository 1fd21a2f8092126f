"""The run's loggers side by side: each point goes to every one, on the run's optimizer-step axis."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from ..config import TrackingConfig
from .record import read_record, runs_to_continue, write_record
from .sender import Backend, Marks, Sender
from .tensorboard_writer import TensorBoardWriter

# How long the end of a run waits, in all, for the remote trackers to take what is left. A stopped run
# (exit 75) waits less: a cluster's grace after its stop signal (KillWait, often 30 s) also covers the save.
CLOSE_SECONDS = 30.0
STOPPED_CLOSE_SECONDS = 10.0
UPLOAD_CLOSE_SECONDS = 600.0  # a finished run that uploads best.pt (tracking.upload_best): hundreds of MB


class Trackers:
    """TensorBoard in the training process, the remote trackers each through a ``Sender``; their run ids
    and step marks in ``tracking.json`` (and, through ``record``, in each checkpoint)."""

    def __init__(self, run_dir: str, tensorboard: TensorBoardWriter | None) -> None:
        self.run_dir, self.tensorboard = run_dir, tensorboard
        self.senders: dict[str, Sender] = {}
        self.lock = threading.Lock()
        self.last_step = 0

    def start(self, params: dict[str, str]) -> None:
        self._save()
        if self.tensorboard is not None:
            self.tensorboard.start(params)
        for sender in self.senders.values():
            sender.start(params)

    def log(self, series: str, step: int, values: dict[str, float]) -> None:
        """``series`` (step, epoch, eval) keeps each kind's own mark of what a tracker already has."""
        self.last_step = max(self.last_step, step)
        if self.tensorboard is not None:
            self.tensorboard.log(step, values)
        for sender in self.senders.values():
            sender.log(series, step, values)

    def flush(self) -> None:
        """What TensorBoard holds in memory to its files: before a checkpoint, so that a process killed after
        it has written every point up to the checkpoint's step (the resumed run writes those after it)."""
        if self.tensorboard is not None:
            self.tensorboard.flush()

    def record(self) -> dict[str, Any]:
        """The tracked runs and what each has taken: ``tracking.json``'s content, the checkpoint's copy."""
        current = {name: sender.copy_marks() for name, sender in self.senders.items()}
        return {name: {"run_id": m.run_id, "logged": m.logged} for name, m in current.items() if m.run_id}

    def finish(self, outcome: str, summary: dict[str, str], artifact: str | None) -> None:
        """The outcome (finished, stopped, interrupted, failed), then wait for the remote trackers (bounded)."""
        if self.tensorboard is not None:
            self.tensorboard.finish(outcome, summary, self.last_step)
            self.tensorboard = None
        for sender in self.senders.values():
            sender.finish(outcome, summary, artifact)
        seconds = UPLOAD_CLOSE_SECONDS if artifact else STOPPED_CLOSE_SECONDS if outcome == "stopped" else CLOSE_SECONDS
        deadline = time.monotonic() + seconds
        for sender in self.senders.values():
            sender.close(max(0.0, deadline - time.monotonic()))
        self._save()
        self.senders = {}

    def _save(self) -> None:
        """``tracking.json``, where there is a remote tracker (TensorBoard's files are their own record)."""
        if self.senders:
            with self.lock:
                write_record(self.run_dir, self.record())


def open_trackers(options: TrackingConfig, run_dir: str, run_name: str, resumed_step: int,
                  from_checkpoint: dict[str, Any] | None, warn: Callable[[str], None],
                  adding: bool = False, rewound: bool = False) -> Trackers:
    """The configured loggers, going on with the tracked runs the run directory (``tracking.json``) or the
    checkpoint (``from_checkpoint``) names; ``from_checkpoint`` None: new tracked runs.

    ``rewound``: a run sent back to an earlier checkpoint on purpose (``trainer.resume=<file>``): the
    steps after it are sent again even where the tracker has them. ``adding``: results added to the
    tracked runs of a training run (fishnet-eval), whose status stays.
    """
    known = {} if from_checkpoint is None else runs_to_continue(read_record(run_dir), from_checkpoint)
    marks = {name: Marks(entry["run_id"], {k: min(int(v), resumed_step) if rewound else int(v)
                                           for k, v in entry.get("logged", {}).items()})
             for name, entry in known.items()}
    backends = [b for b in (_backend(name, options, run_dir, run_name, marks, adding) for name in options.loggers)
                if b]
    tensorboard = TensorBoardWriter(run_dir, resumed_step) if "tensorboard" in options.loggers else None
    trackers = Trackers(run_dir, tensorboard)
    for backend in backends:
        marks.setdefault(backend.name, Marks())
        trackers.senders[backend.name] = Sender(backend, marks[backend.name], trackers._save, warn)
    return trackers


def _backend(name: str, options: TrackingConfig, run_dir: str, run_name: str, marks: dict[str, Marks],
             adding: bool) -> Backend | None:
    known = marks.get(name)
    adding = adding and known is not None  # a new tracked run is the evaluation's own
    if name == "mlflow":
        from .mlflow_run import MlflowRun

        return MlflowRun(options.mlflow_uri, options.mlflow_experiment, run_name, known.run_id if known else None,
                         adding)
    if name == "wandb":
        from .wandb_run import WandbRun, new_run_id

        run_id = known.run_id if known and known.run_id else new_run_id()
        marks[name] = Marks(run_id, known.logged if known else {})  # recorded before W&B is reached
        return WandbRun(options.wandb_project, options.wandb_entity, options.wandb_mode, run_dir, run_name, run_id,
                        adding)
    return None


def flat_parameters(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """The resolved config as ``section.key`` strings (lists as ``[a, b]``), as trackers take parameters."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flat_parameters(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat
