"""The console script on a real GPU: a SIGKILLed fp16 run resumes bit-identical, scaler included, and
running out of GPU memory is one line and exit 2. Marked ``gpu``: skipped without CUDA."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import write_image_folder
from ..helpers import TINY_TRAIN, assert_ok, assert_same_tensors, assert_user_error, metrics, saved_state

pytestmark = pytest.mark.gpu

HERE = Path(__file__).parent


def run_script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    # Warnings of the GPU machine's own package versions would be lines of stderr besides ours.
    return subprocess.run([sys.executable, str(HERE / name), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_a_killed_fp16_run_resumes_to_the_weights_and_scaler_of_an_uninterrupted_one(tmp_path):
    data = write_image_folder(tmp_path / "data", classes=3, train_per_class=8, ext="jpg")
    overrides = [*TINY_TRAIN, f"data.root={data}", "trainer.device=cuda", "trainer.devices=1", "data.workers=2",
                 "trainer.amp=fp16", "trainer.checkpoint_every_steps=1"]
    never = tmp_path / "never"
    never.touch()  # the marker exists: nothing is killed
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert_ok(run_script("crash_once_train.py", str(never), "3", *overrides, f"hydra.run.dir={reference}",
                         cwd=tmp_path))
    first = run_script("crash_once_train.py", str(tmp_path / "killed-once"), "3", *overrides,
                       f"hydra.run.dir={killed}", cwd=tmp_path)
    assert first.returncode == -9, first.stderr[-2000:]  # SIGKILL after step 3, before its checkpoint
    assert_ok(run_script("crash_once_train.py", str(tmp_path / "killed-once"), "3", *overrides,
                         f"hydra.run.dir={killed}", cwd=tmp_path))
    assert "resumed from" in (killed / "train.log").read_text()
    assert [r["epoch"] for r in metrics(killed)] == [1, 2]
    a, b = saved_state(reference), saved_state(killed)
    assert_same_tensors(a["model"], b["model"])
    assert a["scaler"] == b["scaler"] and a["scaler"] is not None


def test_running_out_of_gpu_memory_is_one_line_and_exit_2(tmp_path):
    data = write_image_folder(tmp_path / "data", classes=8, train_per_class=8, ext="jpg")
    result = run_script("capped_gpu_memory_train.py", "1", *TINY_TRAIN, f"data.root={data}",
                        "trainer.device=cuda", "trainer.devices=1", "data.batch_size=64", "data.train_crop=224",
                        "data.val_resize=256", "data.val_crop=224", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert_user_error(result, "out of GPU memory")
