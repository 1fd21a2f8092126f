"""Stop signals as schedulers and runtimes send them: to every process of the job, loader workers included."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fishnet_train.training.trainer import train

from ..conftest import write_image_folder
from ..helpers import BIN, TINY_TRAIN, add_large_photos, assert_same_tensors, metrics, saved_state, tiny_options

# JPEGs in two loader worker processes, as users train; 4 steps per epoch; last.pt only at epoch ends.
WORKERS = ("data.workers=2", "trainer.epochs=3", "trainer.log_every_steps=1", "trainer.checkpoint_every_steps=0")


def start_in_own_group(data: Path, run_dir: Path, *overrides: str) -> subprocess.Popen:
    cmd = [str(BIN / "fishnet-train"), *TINY_TRAIN, f"data.root={data}", f"hydra.run.dir={run_dir}", *WORKERS,
           *overrides]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for_log(run_dir: Path, text: str, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    log = run_dir / "train.log"
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and text in log.read_text():
            return
        time.sleep(0.02)
    raise AssertionError(f"{text!r} never logged; exit {proc.poll()}")


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> str:
    """``sig`` to every process of the run, as scancel, a time limit or preemption sends it; its stderr."""
    os.killpg(proc.pid, sig)
    try:
        _, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGUSR1, marks=pytest.mark.slow)],
                         ids=lambda s: s.name)
def test_a_stop_signal_to_every_process_with_loader_workers_saves_mid_epoch_and_exits_75(tmp_path, sig):
    data = write_image_folder(tmp_path / "data", ext="jpg")
    run_dir = tmp_path / "run"
    proc = start_in_own_group(data, run_dir)
    wait_for_log(run_dir, "epoch 2/3  2/4", proc)
    stderr = stop_group(proc, sig)  # as scancel, a time limit, preemption, timeout(1) and container runtimes send it
    assert proc.returncode == 75, stderr[-3000:]
    assert "Traceback" not in stderr and "killed by signal" not in stderr
    progress = saved_state(run_dir)["progress"]
    assert progress["epoch"] == 1 and progress["epoch_step"] >= 2  # saved where it stopped, not at epoch 1's end


# Two passes over 60 val images, 10 batches each (a fraction of a second each): a stop signal sent at the
# second pass's first batch reaches it well before its end.
LONG_VALIDATION = ("trainer.epochs=2", "model.ema_decay=0.9")


@pytest.mark.slow  # three runs: stopped, resumed, and an uninterrupted one to compare with
def test_a_stop_signal_while_validating_ends_the_pass_and_the_resumed_run_validates_again_as_if_never_stopped(
        tmp_path):
    data = write_image_folder(tmp_path / "data", ext="jpg", val_per_class=20)
    run_dir = tmp_path / "run"
    proc = start_in_own_group(data, run_dir, *LONG_VALIDATION)
    wait_for_log(run_dir, "val (EMA)  1/10", proc)  # epoch 1's second pass, over the EMA weights
    stderr = stop_group(proc)
    assert proc.returncode == 75, stderr[-3000:]
    assert "Traceback" not in stderr and "while validating epoch 1" in stderr
    assert "val (EMA)  10/10" not in (run_dir / "train.log").read_text()  # the pass ended early
    progress = saved_state(run_dir)["progress"]
    assert (progress["epoch"], progress["epoch_step"], progress["step"]) == (0, 4, 4)  # trained, not validated
    assert not (run_dir / "metrics.jsonl").exists()

    resumed = subprocess.run(proc.args, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    reference_dir = tmp_path / "reference"
    train(tiny_options(data, *WORKERS, *LONG_VALIDATION), str(reference_dir))
    assert_same_tensors(saved_state(run_dir)["model"], saved_state(reference_dir)["model"])
    assert_same_tensors(saved_state(run_dir)["model_ema"], saved_state(reference_dir)["model_ema"])
    timings = ("images_per_sec", "epoch_seconds", "data_wait")
    assert [{k: v for k, v in r.items() if k not in timings} for r in metrics(run_dir)] == \
        [{k: v for k, v in r.items() if k not in timings} for r in metrics(reference_dir)]


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (its loader workers), from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            stat = (Path("/proc") / entry / "stat").read_text() if entry.isdigit() else ""
            if stat and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
        except (OSError, IndexError):
            pass  # ended meanwhile
    return found


@pytest.mark.slow  # over 6 s on 2 cores
def test_a_stop_signal_during_the_data_scan_exits_75_at_once_without_a_traceback(tmp_path):
    data = write_image_folder(tmp_path / "data", ext="jpg")
    add_large_photos(data, 150)
    run_dir = tmp_path / "run"
    proc = start_in_own_group(data, run_dir, "data.scan=true")
    wait_for_log(run_dir, "data index:", proc)
    deadline = time.time() + 120
    while not children(proc.pid) and proc.poll() is None and time.time() < deadline:  # the scan's workers
        time.sleep(0.01)
    stderr = stop_group(proc)
    assert proc.returncode == 75, stderr[-3000:]
    assert "Traceback" not in stderr and "while scanning the data (data.scan=true), before training" in stderr
    assert "data scan:" not in (run_dir / "train.log").read_text()  # stopped before the end of the scan
    assert not (run_dir / "checkpoints" / "last.pt").exists()
