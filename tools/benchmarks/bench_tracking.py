"""What tracking costs the training thread: TensorBoard, MLflow (a local server this starts, SQLite behind
it) and W&B (offline) at once, against no tracker, on the trainer's loop."""
from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import torch

from bench_rounds import median_of_rounds, timed

if TYPE_CHECKING:
    from fishnet_train.reporting import Reporter

POINT = {"train/loss": 1.0, "train/lr": 0.1, "train/images_per_sec": 100.0}


@contextlib.contextmanager
def mlflow_server(folder: str) -> Iterator[str | None]:
    """A local ``mlflow server`` (None where MLflow is not installed)."""
    if importlib.util.find_spec("mlflow") is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--backend-store-uri", f"sqlite:///{folder}/runs.db",
               "--default-artifact-root", f"{folder}/artifacts"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(240):
            with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                break
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()


def bench_tracking(name: str, batch: int, size: int, steps: int, rounds: int, every: int) -> dict:
    """Seconds per logging call on the training thread, and the loop's images/s with every tracker logging at
    every step (``every`` times the default rate) against none: the cost at the default ``every``, from both."""
    from fishnet_train.config import TrackingConfig
    from fishnet_train.reporting import Reporter
    from fishnet_train.tracking import open_trackers

    loggers = ["tensorboard"] + [n for n in ("mlflow", "wandb") if importlib.util.find_spec(n) is not None]
    with tempfile.TemporaryDirectory() as tmp, mlflow_server(tmp) as uri:
        options = TrackingConfig(loggers=tuple(loggers), mlflow_uri=uri, wandb_mode="offline")
        trackers = open_trackers(options, tmp, "bench", 0, None, print)
        trackers.start({"bench": "tracking"})
        calls = 2000
        start = time.perf_counter()
        for step in range(1, calls + 1):
            trackers.log("step", step, POINT)
        per_call = (time.perf_counter() - start) / calls
        tracked, plain = Reporter(tmp, active=True), Reporter(tmp, active=True)
        tracked.track(trackers)
        loop_rates = _loop_rates(name, batch, size, steps, rounds, {"none": plain, "every_step": tracked}, calls)
        tracked.close("finished")
    step_seconds = batch / loop_rates["none"]
    return {"loggers": loggers, "per_call_ms": 1e3 * per_call, "step_ms": 1e3 * step_seconds,
            "images_per_sec": loop_rates, "every_step_overhead": 1.0 - loop_rates["every_step"] / loop_rates["none"],
            "overhead_at_default": per_call / (every * step_seconds), "every": every}


def _loop_rates(name: str, batch: int, size: int, steps: int, rounds: int, reporters: dict, first_step: int) -> dict:
    """``train_one_epoch`` on in-memory batches with each reporter, rounds alternating; each run's steps are
    new ones (a tracker skips steps it already has)."""
    from fishnet_train.data import BatchPreprocess
    from fishnet_train.models import create_model
    from fishnet_train.training.checkpoint import Progress
    from fishnet_train.training.loop import LoopOptions, StepParts, train_one_epoch
    from fishnet_train.training.optim import LrSchedule, build_sgd

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = create_model(name, num_classes=2).to(device, memory_format=torch.channels_last)
    optimizer = build_sgd(model, 0.01, 0.9, 1e-4, nesterov=False, decay_norm_and_bias=True)
    preprocess = BatchPreprocess([0.485, 0.456, 0.406], [0.229, 0.224, 0.225], device, channels_last=True)
    parts = StepParts(model, model, optimizer, torch.amp.GradScaler(device.type, enabled=False),
                      LrSchedule(0.01, steps, 10**6), preprocess, device)
    loop = LoopOptions(steps_per_epoch=steps, epochs=1, global_batch=batch, track_every_steps=1)
    batches = [(torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8), torch.randint(0, 2, (batch,)),
                torch.zeros(batch, 3), [])] * steps
    next_step = itertools.count(first_step + 1, steps)

    def epoch(reporter: Reporter) -> None:
        train_one_epoch(parts, batches, Progress(step=next(next_step)), loop, reporter=reporter)

    return median_of_rounds({key: (lambda r=r: timed(lambda: epoch(r), 1, steps * batch, device))
                             for key, r in reporters.items()}, rounds)
