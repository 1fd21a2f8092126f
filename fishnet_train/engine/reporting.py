"""Everything the run shows or writes for people: one object, active on rank 0 only."""
from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, Iterable, Iterator

from tqdm import tqdm

log = logging.getLogger("fishnet_train")


class Reporter:
    """Progress bars, the log, ``metrics.jsonl`` and TensorBoard, written by rank 0 only.

    On other ranks every method is a no-op, so callers never test the rank themselves.
    """

    def __init__(self, run_dir: str | None, active: bool, tensorboard: bool = True) -> None:
        self.active = active and run_dir is not None
        self.run_dir = run_dir or ""
        self.writer = None
        if self.active and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(os.path.join(self.run_dir, "tb"))

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
        """One line of ``metrics.jsonl`` per epoch, flushed at once, and its numbers in TensorBoard."""
        if not self.active:
            return
        with open(os.path.join(self.run_dir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
        numbers = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k not in ("epoch", "step")}
        self.scalars(numbers, record["epoch"], prefix="epoch/")

    def write_text(self, name: str, text: str) -> None:
        if self.active:
            with open(os.path.join(self.run_dir, name), "w") as f:
                f.write(text)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None


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
