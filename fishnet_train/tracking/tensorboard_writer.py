"""TensorBoard event files under ``<run dir>/tb``: written in the training process (local files, no server)."""
from __future__ import annotations

import os


class TensorBoardWriter:
    name = "tensorboard"

    def __init__(self, run_dir: str, resumed_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # Points after the checkpoint that a killed process had written are trained, and written, again:
        # purge_step makes TensorBoard drop the stale ones, so each step shows once.
        self.writer = SummaryWriter(os.path.join(run_dir, "tb"), purge_step=resumed_step + 1)
        self.resumed_step = resumed_step

    def start(self, params: dict[str, str]) -> None:
        if self.resumed_step == 0:
            table = "\n".join(f"| {k} | {v} |" for k, v in params.items())
            self.writer.add_text("run/parameters", "| key | value |\n|---|---|\n" + table, 0)

    def log(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def flush(self) -> None:
        self.writer.flush()

    def finish(self, outcome: str, summary: dict[str, str], step: int) -> None:
        lines = [f"outcome: {outcome}"] + [f"{k}: {v}" for k, v in summary.items()]
        self.writer.add_text("run/outcome", "  \n".join(lines), step)
        self.writer.flush()
        self.writer.close()
