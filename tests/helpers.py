"""Helpers shared by the test packages: tiny models and configs, crafted files, CLI runners."""
from __future__ import annotations

import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_module
from PIL import Image

from fishnet_train.config import TrainConfig, register_configs, to_options

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))

# A small FishNet (one block per stage) keeps CPU tests fast while exercising every stage.
TINY_FISHNET = dict(residual_blocks=(1,) * 10, transfer_blocks=(1,) * 6)

# FishNet-99 at 32 px on 3 tiny classes: a CPU step takes a fraction of a second. At 32 px
# the deepest features are 1x1, where BN over a few samples gives huge gradients: clip them.
# Two loader workers, as users train (the default is 8): decoding, augmentation and the RNG
# streams run in forked processes, not in the training process.
TINY_TRAIN = [
    "experiment=demo", "data.batch_size=6", "data.workers=2", "optim.lr=0.002", "trainer.clip_grad_norm=2.0",
    "trainer.epochs=2", "trainer.deterministic=true", "data.crop_scale=[0.5,1.0]", "schedule.warmup_epochs=1",
]


class Crash(Exception):
    """Raised by ``crash_at``'s hook: a crash in the middle of a run, injected through ``after_step``."""


def crash_at(step: int):
    """An ``after_step`` hook that raises ``Crash`` once the run reaches ``step``."""
    def hook(progress):
        if progress.step == step:
            raise Crash(step)
    return hook


def compose_app(config_name: str, *overrides: str):
    """The real config of a console script (``train``, ``eval``, ``predict``, ``export``), composed as it does."""
    register_configs()
    with initialize_config_module("fishnet_train.conf", version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


def compose_train(*overrides: str):
    return compose_app("train", *overrides)


def compose_eval(*overrides: str):
    return compose_app("eval", *overrides)


def compose_predict(*overrides: str):
    return compose_app("predict", *overrides)


def compose_export(*overrides: str):
    return compose_app("export", *overrides)


def eval_in_process(checkpoint: Path, data: Path, out: Path, *overrides: str):
    """``fishnet-eval`` of ``checkpoint`` on ``data`` as the console script runs it, in this process, with two
    loader workers."""
    from fishnet_train.apps.evaluator import run_eval

    options = to_options(compose_eval(f"checkpoint={checkpoint}", f"data.root={data}", "data.workers=2", *overrides))
    out.mkdir(parents=True)
    return run_eval(options, str(out), overridden=[o.split("=", 1)[0] for o in overrides])


def tiny_options(data: Path, *overrides: str) -> TrainConfig:
    """The typed options of a tiny CPU training run on ``data`` (TINY_TRAIN, then ``overrides``)."""
    return to_options(compose_train(*TINY_TRAIN, f"data.root={data}", "trainer.device=cpu", *overrides))


class PicklePayload:
    """Unpickling this runs ``touch PWNED_BY_PICKLE`` in the current directory."""

    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


def write_crafted_pickle(path: Path, key: str = "model", protocol: int = pickle.HIGHEST_PROTOCOL) -> Path:
    with open(path, "wb") as f:
        pickle.dump({key: PicklePayload()}, f, protocol=protocol)
    return path


def saved_state(run_dir: Path, name: str = "last.pt") -> dict:
    return torch.load(run_dir / "checkpoints" / name, weights_only=True)


def assert_same_tensors(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def run_cli(command: str, *args: str, cwd: Path | None = None, env: dict | None = None,
            timeout: int = 300) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    full_env.update({"PYTHONUNBUFFERED": "1", **(env or {})})
    return subprocess.run([str(BIN / command), *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def train_cli(data: Path, run_dir: Path, *overrides: str, **kwargs) -> subprocess.CompletedProcess:
    return run_cli("fishnet-train", *TINY_TRAIN, f"data.root={data}", f"hydra.run.dir={run_dir}", *overrides, **kwargs)


def start_training(data: Path, run_dir: Path, *overrides: str) -> subprocess.Popen:
    cmd = [str(BIN / "fishnet-train"), *TINY_TRAIN, f"data.root={data}", f"hydra.run.dir={run_dir}", *overrides]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def progress_at(run_dir: Path, step: int) -> dict | None:
    """last.pt's progress if it records at least ``step`` optimiser steps, else None."""
    path = run_dir / "checkpoints" / "last.pt"
    if path.exists():
        try:
            progress = torch.load(path, weights_only=True)["progress"]
            return progress if progress["step"] >= step else None
        except Exception:
            pass  # being replaced right now
    return None


def wait_for_step(run_dir: Path, step: int, proc: subprocess.Popen, timeout: float = 240) -> dict:
    """Wait until last.pt records at least ``step`` optimiser steps; returns its progress."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        progress = progress_at(run_dir, step)
        if progress is not None:
            return progress
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint at step {step}; exit {proc.poll()}")


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}")


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit 2, one line on stderr holding every fragment, no traceback."""
    assert result.returncode == 2, f"exit {result.returncode}\nstderr:\n{result.stderr[-3000:]}"
    lines = [line for line in result.stderr.splitlines() if line.strip() and "it/s" not in line and "s/it" not in line]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def add_large_photos(data: Path, count: int) -> None:
    """``count`` copies of one 2400x2400 JPEG among the train images: a scan of a second or more in two workers."""
    y, x = np.mgrid[0:2400, 0:2400]
    pixels = np.stack([x * 255 // 2400, y * 255 // 2400, (x + y) * 255 // 4800], -1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    for i in range(count):
        (data / "train" / f"class_{i % 3}" / f"large_{i}.jpg").write_bytes(buffer.getvalue())


class _InterruptedWhileFinalized:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        self.after = True  # the handler runs at this bytecode, inside __del__


def drop_a_ctrl_c() -> None:
    """Ctrl-C arriving while an object is finalized: Python prints its KeyboardInterrupt and drops it."""
    _InterruptedWhileFinalized()  # freed at once
