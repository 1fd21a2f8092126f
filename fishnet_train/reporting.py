"""Everything the run shows or writes for people: one object, active on rank 0 only."""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from tqdm import tqdm

if TYPE_CHECKING:
    from .tracking import Trackers

log = logging.getLogger("fishnet_train")


class Reporter:
    """Progress bars, the log, ``metrics.jsonl`` and the trackers (TensorBoard, MLflow, W&B: ``track``),
    written by rank 0 only.

    On other ranks every method is a no-op, so callers never test the rank themselves.
    """

    def __init__(self, run_dir: str | None, active: bool, line_every: tuple[int, float] = (100, 60.0),
                 terminal: bool | None = None) -> None:
        self.active = active and run_dir is not None
        self.run_dir = run_dir or ""
        # Bars where a person watches a terminal; in files (SLURM's output, CI, a redirect) a
        # carriage-return bar is one endless line, so there: a plain line every N steps or seconds.
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.line_every = line_every
        self.trackers: Trackers | None = None
        if self.active:
            os.makedirs(self.run_dir, exist_ok=True)  # train(options, run_dir) from Python: no Hydra made it

    def track(self, trackers: Trackers) -> None:
        """Send the run's figures to ``trackers`` from now on (rank 0 opens them; other ranks never do)."""
        self.trackers = trackers

    def info(self, message: str) -> None:
        if self.active:
            log.info(message)

    def warning(self, message: str) -> None:
        if self.active:
            log.warning(message)

    def bar(self, iterable: Iterable, total: int, desc: str) -> Iterable:
        if not self.active:
            return iter(iterable)
        if not self.terminal:
            return ProgressLines(iterable, total, desc, *self.line_every)
        return tqdm(iterable, total=total, desc=desc, dynamic_ncols=True, leave=False, file=sys.stderr)

    def scalars(self, values: dict[str, float], step: int, series: str = "step") -> None:
        """Points of ``step`` for the trackers; ``series`` (step, epoch, eval) groups what a resume compares."""
        if self.trackers is not None:
            self.trackers.log(series, step, values)

    def flush_tracking(self) -> None:
        if self.trackers is not None:
            self.trackers.flush()

    def tracking_record(self) -> dict[str, Any]:
        """The tracked runs' ids and marks, for the checkpoint."""
        return self.trackers.record() if self.trackers is not None else {}

    def epoch_metrics(self, record: dict[str, Any]) -> None:
        """One line of ``metrics.jsonl`` per epoch, flushed at once, and its numbers for the trackers, at the
        epoch's last step (``epoch/epoch`` says which epoch it is)."""
        if not self.active:
            return
        with open(os.path.join(self.run_dir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
        numbers = {f"epoch/{k}": v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
        self.scalars(numbers, record["step"], series="epoch")

    def keep_epochs(self, last_epoch: int) -> None:
        """Drop the ``metrics.jsonl`` lines of epochs after ``last_epoch`` (a resumed run redoes
        them), so that every epoch has its line exactly once."""
        path = os.path.join(self.run_dir, "metrics.jsonl")
        if not self.active or not os.path.isfile(path):
            return
        with open(path) as f:
            lines = [line for line in f if _epoch_of(line) <= last_epoch]
        with open(path + ".tmp", "w") as f:
            f.writelines(lines)
        os.replace(path + ".tmp", path)

    def write_text(self, name: str, text: str) -> None:
        if self.active:
            with open(os.path.join(self.run_dir, name), "w") as f:
                f.write(text)

    def close(self, outcome: str = "finished", summary: dict[str, str] | None = None,
              artifact: str | None = None) -> None:
        """End the tracked runs with ``outcome`` (finished, stopped, interrupted, failed), ``summary`` (the
        checkpoints' paths) and, if asked, ``artifact`` uploaded."""
        if self.trackers is not None:
            self.trackers.finish(outcome, summary or {}, artifact)
            self.trackers = None


def _epoch_of(line: str) -> float:
    """A metrics line's epoch; a torn line (a process killed mid-write) counts as after every epoch."""
    try:
        return float(json.loads(line)["epoch"])
    except (ValueError, KeyError, TypeError):
        return float("inf")


class ProgressLines:
    """A progress bar's stand-in for logs that are files: a plain line with the latest postfix
    every ``every_steps`` items or ``every_seconds`` seconds, and at the last item."""

    def __init__(self, iterable: Iterable, total: int, desc: str, every_steps: int, every_seconds: float) -> None:
        self.iterable, self.total, self.desc = iterable, total, desc
        self.every_steps, self.every_seconds = every_steps, every_seconds
        self.postfix: dict[str, Any] = {}
        self.done, self.last_line = 0, time.monotonic()
        self.line_due = False  # whether the item just yielded ends with a line

    def _due(self) -> bool:
        return (self.done % self.every_steps == 0 or self.done == self.total
                or time.monotonic() - self.last_line >= self.every_seconds)

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            self.done += 1
            # Decided once per item, before the caller sees it, so it can refresh the postfix first.
            self.line_due = self._due()
            yield item
            if self.line_due:
                self.last_line = time.monotonic()
                fields = "".join(f"  {k} {v}" for k, v in self.postfix.items())
                log.info(f"{self.desc}  {self.done}/{self.total}{fields}")

    def set_postfix(self, **values: Any) -> None:
        self.postfix = values


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    """The one summary line printed per epoch."""
    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    r = record
    return (
        f"epoch {r['epoch']}/{epochs}  train_loss {r['train_loss']:.4f}  val_loss {fmt(r['val_loss'], '.4f')}  "
        f"top1 {fmt(r['top1'], '.2f')}  top5 {fmt(r['top5'], '.2f')}  "
        + (f"ema_top1 {fmt(r['ema_top1'], '.2f')}  " if "ema_top1" in r else "")
        + f"lr {r['lr']:.4g}  "
        f"{r['images_per_sec']:.1f} img/s  {r['epoch_seconds']:.1f}s  "
        f"best {r['best_top1']:.2f} (epoch {r['best_epoch']})  skipped {r['skipped_images']}"
    )
