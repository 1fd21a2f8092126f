"""Bad files, stop signals and Ctrl-C during a run of the console script (in-process counterparts:
tests/training)."""
import os
import re
import signal
import subprocess

import pytest

from ..conftest import write_image_folder
from ..data.test_datasets import plant_odd_files
from ..helpers import (
    BIN, TINY_TRAIN, assert_ok, assert_user_error, metrics, saved_state, start_training, train_cli, wait_for_step,
)


@pytest.mark.slow  # several seconds: make test keeps to its 5 minutes
def test_scan_lists_bad_files_once_and_loader_workers_skip_exactly_them(image_folder, tmp_path):
    odd, bad = plant_odd_files(image_folder / "train" / "class_0")
    files = sum(1 for p in (image_folder / "train").rglob("*") if p.is_file())
    run_dir = tmp_path / "run"
    # One step of the whole folder: every file is drawn, in two loader worker processes.
    result = train_cli(image_folder, run_dir, "trainer.epochs=1", "data.workers=2", f"data.batch_size={files}",
                       "data.scan=true")
    assert_ok(result)
    log = (run_dir / "train.log").read_text()
    for name in bad:
        assert log.count(f"undecodable: {image_folder / 'train' / 'class_0' / name}") == 1, name  # the scan
    for name in odd:
        assert name not in log, name
    reported = [line for line in log.splitlines() if "skipped undecodable file" in line]
    assert {line.split("file ")[1].split(":")[0].rsplit("/", 1)[1] for line in reported} == bad
    assert len(reported) == len(bad) and metrics(run_dir)[0]["skipped_images"] >= len(bad)


def test_bad_images_error_policy_stops_with_the_files_name(image_folder, tmp_path):
    (image_folder / "val" / "class_1" / "broken.jpg").write_bytes(b"")
    result = train_cli(image_folder, tmp_path / "run", "trainer.epochs=1", "data.bad_images=error")
    assert_user_error(result, "broken.jpg", "data.bad_images=skip")


def test_non_finite_loss_exits_2_naming_the_step_and_the_fix(image_folder, tmp_path):
    result = train_cli(image_folder, tmp_path / "run", "trainer.epochs=1", "optim.lr=1e30",
                       "trainer.clip_grad_norm=null")
    assert_user_error(result, "loss became", "step", "trainer.nan_policy=skip")


def test_ctrl_c_stops_cleanly_and_leaves_last_checkpoint_intact(image_folder, tmp_path):
    run_dir = tmp_path / "run"
    proc = start_training(image_folder, run_dir, "trainer.epochs=3", "trainer.checkpoint_every_steps=1")
    wait_for_step(run_dir, 2, proc)
    proc.send_signal(signal.SIGINT)
    try:
        _, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert saved_state(run_dir)["progress"]["step"] >= 2
    assert (run_dir / "tb").is_dir()


def test_sigterm_to_every_process_of_the_job_stops_after_a_step_and_saves_it(tmp_path):
    """As SLURM's requeue, preemption, scancel and time limit, ``timeout`` and container runtimes do:
    the signal reaches the loader workers too. The run saves where it stopped, mid-epoch, with no
    checkpoint written before (checkpoint_every_steps=0)."""
    data = write_image_folder(tmp_path / "data", classes=3, train_per_class=12, ext="jpg")
    run_dir = tmp_path / "run"
    cmd = [str(BIN / "fishnet-train"), *TINY_TRAIN, f"data.root={data}", f"hydra.run.dir={run_dir}",
           "data.workers=2", "trainer.epochs=3", "trainer.log_every_steps=1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        seen = []
        for line in proc.stdout:  # the log: a plain progress line per step where it is not a terminal
            seen.append(line)
            if re.search(r"  step 2 ", line):
                break
        assert proc.poll() is None, "".join(seen)
        os.killpg(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 75, stderr[-3000:]
    assert "Traceback" not in stderr and "killed by signal" not in stderr
    stopped = re.search(r"preempted: stopped by signal at epoch 1, step (\d+)", stderr)
    progress = saved_state(run_dir)["progress"]
    assert stopped and progress["step"] == int(stopped.group(1)) >= 2 and progress["epoch"] == 0
