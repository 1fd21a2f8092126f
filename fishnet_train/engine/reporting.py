"""Everything the run shows or writes for people: one object, active on rank 0 only."""
from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, Iterable, Iterator

from tqdm import tqdm

log = logging.getLogger("fishnet_train")


class _TqdmSafeHandler(logging.StreamHandler):
    """Writes through tqdm so that a line never tears an open progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # logging must never crash training
            self.handleError(record)


def setup_logging(log_file: str | None) -> None:
    """Console (plain lines) and, if given, a timestamped log file. Replaces earlier handlers."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    console = _TqdmSafeHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(console)
    if log_file:
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s"))
        root.addHandler(file_handler)
    root.setLevel(logging.INFO)


class Reporter:
    """Progress bars, the log, ``metrics.jsonl`` and TensorBoard, written by rank 0 only.

    On other ranks every method is a no-op, so callers never test the rank themselves.
    """

    def __init__(self, run_dir: str | None, active: bool, tensorboard: bool = True) -> None:
        self.active = active and run_dir is not None
        self.run_dir = run_dir
        self.writer = None
        if self.active and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(os.path.join(run_dir, "tb"))

    def info(self, message: str) -> None:
        if self.active:
            log.info(message)

    def warning(self, message: str) -> None:
        if self.active:
            log.warning(message)

    def bar(self, iterable: Iterable, total: int, desc: str) -> Iterator:
        if not self.active:
            return iter(iterable)
        return tqdm(iterable, total=total, desc=desc, dynamic_ncols=True, leave=False, file=sys.stderr)

    def scalars(self, values: dict[str, float], step: int, prefix: str = "") -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(prefix + key, value, step)

    def epoch_metrics(self, record: dict[str, Any]) -> None:
        """One line of ``metrics.jsonl`` per epoch, flushed at once."""
        if not self.active:
            return
        with open(os.path.join(self.run_dir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def write_text(self, name: str, text: str) -> None:
        if self.active:
            with open(os.path.join(self.run_dir, name), "w") as f:
                f.write(text)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None
