"""Stop signals as schedulers and runtimes send them: to every process of the job, loader workers included."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ..conftest import write_image_folder
from ..helpers import BIN, TINY_TRAIN, saved_state

# JPEGs in two loader worker processes, as users train; 4 steps per epoch; last.pt only at epoch ends.
WORKERS = ("data.workers=2", "trainer.epochs=3", "trainer.log_every_steps=1", "trainer.checkpoint_every_steps=0")


def start_in_own_group(data: Path, run_dir: Path) -> subprocess.Popen:
    cmd = [str(BIN / "fishnet-train"), *TINY_TRAIN, f"data.root={data}", f"hydra.run.dir={run_dir}", *WORKERS]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for_log(run_dir: Path, text: str, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    log = run_dir / "train.log"
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and text in log.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never logged; exit {proc.poll()}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGUSR1, marks=pytest.mark.slow)],
                         ids=lambda s: s.name)
def test_a_stop_signal_to_every_process_with_loader_workers_saves_mid_epoch_and_exits_75(tmp_path, sig):
    data = write_image_folder(tmp_path / "data", ext="jpg")
    run_dir = tmp_path / "run"
    proc = start_in_own_group(data, run_dir)
    wait_for_log(run_dir, "epoch 2/3  2/4", proc)
    os.killpg(proc.pid, sig)  # as scancel, a time limit, preemption, timeout(1) and container runtimes send it
    try:
        _, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 75, stderr[-3000:]
    assert "Traceback" not in stderr and "killed by signal" not in stderr
    progress = saved_state(run_dir)["progress"]
    assert progress["epoch"] == 1 and progress["epoch_step"] >= 2  # saved where it stopped, not at epoch 1's end
