"""Against a real one-node SLURM: requeues, time-limit warnings, submitit and a failing rank, each
ending bit-identical to an uninterrupted job (2 CPU tasks, ``trainer.deterministic=true``)."""
from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import torch

from ..conftest import write_image_folder
from ..helpers import BIN, TINY_TRAIN, add_large_photos, assert_ok, assert_same_tensors, metrics, train_cli
from .conftest import (
    STEPS, job_env, output, submit_training, wait_for_checkpoint,
)

pytestmark = pytest.mark.slurm


def weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def assert_resumed_once_and_complete(run_dir: Path, stopped_at: dict) -> None:
    log = (run_dir / "train.log").read_text()
    assert log.count("resumed from") == 1, log
    saved = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["progress"]
    assert saved["step"] == 9  # 3 epochs of 24 images in global batches of 8
    assert [r["epoch"] for r in metrics(run_dir)] == [1, 2, 3]  # every epoch once
    assert stopped_at["step"] >= 2


def stop_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("preempted: stopped by signal")]


def test_srun_tasks_use_their_cpus_and_train_as_devices_2(slurm, reference_job, slurm_data, tmp_path):
    log = (reference_job / "train.log").read_text()
    assert "2 process(es) on cpu" in log and "1 CPU threads" in log  # --cpus-per-task=1, not the node's 2 cores
    local = tmp_path / "devices2"
    assert_ok(train_cli(slurm_data, local, *STEPS, "trainer.devices=2"))
    assert_same_tensors(weights(reference_job), weights(local))


def test_scontrol_requeue_stops_every_rank_at_one_step_and_the_job_resumes_there(
        slurm, reference_job, slurm_data, tmp_path):
    # Two loader workers per task, as users train: the requeue's SIGTERM reaches them too.
    job, run_dir = submit_training(slurm, tmp_path, slurm_data, "data.workers=2")
    stopped_at = wait_for_checkpoint(slurm, job, run_dir, 2)
    slurm.command("scontrol", "requeue", str(job))  # SIGTERM to every process of the job
    info = slurm.wait_done(job)
    text = output(tmp_path, job)
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", (info, text)
    lines = stop_lines(text)
    assert len(lines) == 2 and lines[0] == lines[1], text  # both ranks, at the same step
    assert_resumed_once_and_complete(run_dir, stopped_at)
    assert_same_tensors(weights(reference_job), weights(run_dir))


def test_a_usr1_warning_makes_the_shipped_script_requeue_the_job(slurm, reference_job, slurm_data, tmp_path):
    job, run_dir = submit_training(slurm, tmp_path, slurm_data)
    stopped_at = wait_for_checkpoint(slurm, job, run_dir, 2)
    slurm.command("scancel", "--signal=USR1", str(job))  # what --signal=USR1@T sends at a time limit
    info = slurm.wait_done(job)
    text = output(tmp_path, job)
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", (info, text)
    assert f"requeueing job {job} (restart 1)" in text
    lines = stop_lines(text)
    assert len(lines) == 2 and lines[0] == lines[1], text
    assert_resumed_once_and_complete(run_dir, stopped_at)
    assert_same_tensors(weights(reference_job), weights(run_dir))


def test_a_named_run_resubmitted_as_a_new_job_resumes_bit_identical_and_refuses_another_recipe(
        slurm, reference_job, slurm_data, tmp_path):
    """As after FISHNET_MAX_REQUEUES or a cancel to change the time limit: the same command in a new job."""
    named = ("name=paper", "data.workers=2")
    first, _ = submit_training(slurm, tmp_path, slurm_data, *named, env={"FISHNET_MAX_REQUEUES": "0"})
    run_dir = tmp_path / "outputs" / "train" / "paper"
    stopped_at = wait_for_checkpoint(slurm, first, run_dir, 2)
    slurm.command("scancel", "--signal=USR2", str(first))
    info = slurm.wait_done(first)
    assert info["Restarts"] == "0" and "not requeueing" in output(tmp_path, first), (info, output(tmp_path, first))
    second, _ = submit_training(slurm, tmp_path, slurm_data, *named, sbatch_options=("--time=9",))
    info = slurm.wait_done(second)
    assert info["JobState"] == "COMPLETED", (info, output(tmp_path, second))
    assert_resumed_once_and_complete(run_dir, stopped_at)
    assert_same_tensors(weights(reference_job), weights(run_dir))
    starts = [line for line in (run_dir / "train.log").read_text().splitlines() if "run directory" in line]
    assert len(starts) == 2 and starts[0].endswith(f"run directory {run_dir}: a new run"), starts
    resumed = re.search(r"resumed from \S+ at (epoch \d+, step \d+ of it)", log := (run_dir / "train.log").read_text())
    assert resumed and f"run directory {run_dir}: resumes {resumed[1]}, from " in starts[1], (starts, log)
    assert [p.name for p in (tmp_path / "outputs" / "train").iterdir()] == ["paper"]
    third, _ = submit_training(slurm, tmp_path, slurm_data, *named, "optim.lr=0.2")
    info = slurm.wait_done(third)
    refused = [line for line in output(tmp_path, third).splitlines() if line.startswith("error:")]
    assert info["ExitCode"].startswith("2:") and refused, (info, output(tmp_path, third))
    assert f"{run_dir} was started with optim.lr=" in refused[0] and "optim.lr=0.2" in refused[0]


# Long enough that SLURM's own time-limit warning comes several times: 60 epochs of 3 steps (about
# 2 minutes of training here), against a 3-minute limit whose warning comes 120 s before it.
TIME_LIMITED = ["trainer.epochs=60", "trainer.checkpoint_every_steps=0", "data.workers=2"]


def test_a_real_time_limit_warns_by_the_scripts_own_signal_line_and_the_requeued_job_ends_bit_identical(
        slurm, tmp_path):
    """No signal sent by hand: sbatch --time=3, the shipped script's #SBATCH --signal=USR2@120 and its
    requeue logic, loader workers and JPEGs. Every stop saves, every restart resumes where it stopped."""
    data = write_image_folder(tmp_path / "data", ext="jpg")
    job, run_dir = submit_training(slurm, tmp_path / "job", data, *TIME_LIMITED, sbatch_options=("--time=3",))
    info = slurm.wait_done(job, timeout=1500)
    text = output(tmp_path / "job", job)
    reference = tmp_path / "reference"
    assert_ok(train_cli(data, reference, *STEPS, *TIME_LIMITED, "trainer.devices=2", timeout=900))
    restarts = int(info["Restarts"])
    assert info["JobState"] == "COMPLETED" and restarts >= 1, (info, text[-3000:])
    for k in range(1, restarts + 1):
        assert f"requeueing job {job} (restart {k})" in text, text[-3000:]
    assert len(stop_lines(text)) == 2 * restarts, text[-3000:]  # both ranks, at each warning
    assert "Traceback" not in text, text[-3000:]
    log = (run_dir / "train.log").read_text()
    assert log.count("resumed from") == restarts, log[-3000:]
    assert [r["epoch"] for r in metrics(run_dir)] == list(range(1, 61))  # every epoch once
    assert_same_tensors(weights(reference), weights(run_dir))


def test_the_submitit_launcher_saves_on_usr2_and_its_requeued_job_resumes_mid_epoch(
        slurm, reference_job, slurm_data, tmp_path):
    launcher = ["-m", "hydra/launcher=fishnet_slurm", "hydra.launcher.tasks_per_node=2",
                "hydra.launcher.cpus_per_task=1", "hydra.launcher.gpus_per_node=null", "hydra.launcher.mem_gb=null",
                "hydra.launcher.timeout_min=20"]
    env = {**os.environ, **slurm.env, **job_env()}
    submitter = subprocess.Popen([str(BIN / "fishnet-train"), *launcher, *TINY_TRAIN, f"data.root={slurm_data}",
                                  *STEPS], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True)
    try:
        sweeps = wait_for(lambda: list((tmp_path / "multirun" / "train").glob("*/.submitit/*/")), 120)
        job = int(sweeps[0].name)
        run_dir = sweeps[0].parents[1] / "0"  # the submitter's sweep directory, not one named by the job
        stopped_at = wait_for_checkpoint(slurm, job, run_dir, 2)
        slurm.command("scancel", "--signal=USR2", str(job))  # submitit's time-out warning
        out, _ = submitter.communicate(timeout=400)
    finally:
        submitter.kill()
    assert submitter.returncode == 0, out[-3000:]
    submission = (sweeps[0] / f"{job}_submission.sh").read_text()
    assert "export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK\n" in submission  # srun would not pass it on itself
    info = slurm.wait_done(job)  # the submitter returns once the result is written, before SLURM's record
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", info
    assert_resumed_once_and_complete(run_dir, stopped_at)
    assert "step 0 of it" not in (run_dir / "train.log").read_text()  # mid-epoch, not from an epoch's start
    assert_same_tensors(weights(reference_job), weights(run_dir))


def loader_workers(job_id: int) -> list[int]:
    """The job's loader workers: its processes started by one of its training processes."""
    parents: dict[int, int] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        proc = Path("/proc") / entry
        try:
            if f"SLURM_JOB_ID={job_id}".encode() in proc.joinpath("environ").read_bytes().split(b"\0") and \
                    b"fishnet-train" in proc.joinpath("cmdline").read_bytes():
                parents[int(entry)] = int(proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            pass  # ended meanwhile
    return [pid for pid, parent in parents.items() if parent in parents]


def test_a_requeue_during_the_data_scan_stops_every_rank_without_a_traceback_and_the_job_trains_after(
        slurm, slurm_data, tmp_path):
    data = tmp_path / "data"
    subprocess.run(["cp", "-r", str(slurm_data), str(data)], check=True)
    add_large_photos(data, 150)  # a scan of some seconds
    job, run_dir = submit_training(slurm, tmp_path / "job", data, "data.scan=true", "data.workers=2")
    log = run_dir / "train.log"
    wait_for(lambda: log.exists() and "data index:" in log.read_text(), 240)
    wait_for(lambda: loader_workers(job), 60)  # the scan has started its workers
    slurm.command("scontrol", "requeue", str(job))  # SIGTERM to every process of the job, workers included
    info = slurm.wait_done(job)
    text = output(tmp_path / "job", job)
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", (info, text)
    lines = [line for line in text.splitlines() if line.startswith("preempted: stopped by SIGTERM while scanning")]
    assert len(lines) == 2 and "Traceback" not in text, text  # both ranks, before training: nothing saved
    assert [r["epoch"] for r in metrics(run_dir)] == [1, 2, 3]


def test_a_user_error_on_one_rank_ends_the_job_within_a_minute_with_exit_2(slurm, slurm_data, tmp_path):
    data = tmp_path / "data"
    subprocess.run(["cp", "-r", str(slurm_data), str(data)], check=True)
    # The last val file is undecodable: only rank 1's shard of the val set holds it.
    (data / "val" / "class_2" / "zz_broken.png").write_bytes(b"not an image")
    job, run_dir = submit_training(slurm, tmp_path, data, "data.bad_images=error", "trainer.epochs=1")
    info = slurm.wait_done(job, timeout=240)
    text = output(tmp_path, job)
    assert info["JobState"] == "FAILED" and info["ExitCode"] == "2:0" and info["Restarts"] == "0", (info, text)
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "zz_broken.png" in errors[0] and "Traceback" not in text, text
    assert any(line.startswith("stopping: rank 1 failed:") for line in text.splitlines()), text
    # Rank 0's last log line comes just before the validation in which rank 1 fails.
    last_line = (run_dir / "train.log").read_text().splitlines()[-1]
    failed_at = time.mktime(time.strptime(last_line[1:20], "%Y-%m-%d %H:%M:%S"))
    ended = time.mktime(time.strptime(info["EndTime"], "%Y-%m-%dT%H:%M:%S"))
    assert ended - failed_at < 60, (last_line, info)  # seconds, not the 30-minute collective timeout


def wait_for(find, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"nothing found after {timeout} s")
