"""Bad files, non-finite losses and Ctrl-C during a run."""
import signal
import subprocess

import torch

from ..data.test_datasets import plant_odd_files
from .helpers import assert_ok, assert_user_error, metrics, train
from .test_distributed import start_training, wait_for_step


def test_planted_bad_files_are_skipped_reported_once_and_counted(image_folder, tmp_path):
    odd, bad = plant_odd_files(image_folder / "train" / "class_0")
    run_dir = tmp_path / "run"
    result = train(image_folder, run_dir, "trainer.epochs=1", "data.workers=2", "data.batch_size=8",
                   "data.scan=true")
    assert_ok(result)
    log = (run_dir / "train.log").read_text()
    for name in bad:
        assert log.count(f"undecodable: {image_folder / 'train' / 'class_0' / name}") == 1, name  # the scan
    for name in odd:
        assert name not in log, name
    record = metrics(run_dir)[0]
    reported = [line for line in log.splitlines() if "skipped undecodable file" in line]
    assert record["skipped_images"] >= len(reported) and len(set(reported)) == len(reported)
    assert {line.split("file ")[1].split(":")[0].rsplit("/", 1)[1] for line in reported} <= bad


def test_bad_images_error_policy_stops_with_the_files_name(image_folder, tmp_path):
    (image_folder / "val" / "class_1" / "broken.jpg").write_bytes(b"")
    result = train(image_folder, tmp_path / "run", "trainer.epochs=1", "data.bad_images=error")
    assert_user_error(result, "broken.jpg", "data.bad_images=skip")


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(image_folder, tmp_path):
    run_dir = tmp_path / "run"
    assert_ok(train(image_folder, run_dir, "trainer.epochs=1"))
    before = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    result = train(image_folder, run_dir, "trainer.epochs=2", "optim.lr=1e30", "trainer.clip_grad_norm=null")
    assert_user_error(result, "loss became", "step", "trainer.nan_policy=skip")
    after = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert after["progress"] == before["progress"]


def test_non_finite_loss_can_be_skipped(image_folder, tmp_path):
    result = train(image_folder, tmp_path / "run", "trainer.epochs=1", "optim.lr=1e30",
                   "trainer.clip_grad_norm=null", "trainer.nan_policy=skip")
    assert_ok(result)
    assert "step skipped" in (tmp_path / "run" / "train.log").read_text()


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
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["progress"]["step"] >= 2
    assert (run_dir / "tb").is_dir()
