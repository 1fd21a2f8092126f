"""Bad files and Ctrl-C during a run of the console script (in-process counterparts: tests/training)."""
import signal
import subprocess

import pytest

from ..data.test_datasets import plant_odd_files
from ..helpers import assert_ok, assert_user_error, metrics, saved_state, start_training, train_cli, wait_for_step


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


@pytest.mark.slow  # over 6 s on 2 cores
def test_bad_images_error_policy_stops_with_the_files_name(image_folder, tmp_path):
    (image_folder / "val" / "class_1" / "broken.jpg").write_bytes(b"")
    result = train_cli(image_folder, tmp_path / "run", "trainer.epochs=1", "data.bad_images=error")
    assert_user_error(result, "broken.jpg", "data.bad_images=skip")


@pytest.mark.slow  # over 6 s on 2 cores
def test_non_finite_loss_exits_2_naming_the_step_and_the_fix(image_folder, tmp_path):
    result = train_cli(image_folder, tmp_path / "run", "trainer.epochs=1", "optim.lr=1e30",
                       "trainer.clip_grad_norm=null")
    assert_user_error(result, "loss became", "step", "trainer.nan_policy=skip")


@pytest.mark.slow  # over 6 s on 2 cores
def test_ctrl_c_stops_cleanly_and_leaves_last_checkpoint_intact(image_folder, tmp_path):
    run_dir = tmp_path / "run"
    # Epochs enough that the run cannot end on its own between step 2 and the signal.
    proc = start_training(image_folder, run_dir, "trainer.epochs=30", "trainer.checkpoint_every_steps=1")
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
