"""The real SLURM cluster (started once for the session) and what its tests share."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from fishnet_train.cli.common import slurm_run_name

from ..conftest import write_image_folder
from ..helpers import BIN, ROOT, TINY_TRAIN, progress_at
from .slurm import SlurmCluster, missing_reason

SBATCH = ROOT / "tools" / "slurm" / "train.sbatch"
# Three epochs of three steps on two tasks: a signal at step 2 comes well before the run's end.
STEPS = ["trainer.epochs=3", "data.batch_size=8", "trainer.checkpoint_every_steps=1"]


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    reason = missing_reason()
    if reason is not None:
        pytest.skip(reason)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def slurm_data(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("slurm_data") / "data")


def job_env() -> dict[str, str]:
    """What a job needs from here: fishnet-train on PATH (sbatch passes the environment on)."""
    return {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}


def edited_script(folder: Path, tasks: int = 2, cpus: int = 1) -> Path:
    """The shipped batch script with its cluster settings edited, as a user does: ``tasks`` CPU tasks
    of ``cpus`` cores each on the one node, no GPUs, ten minutes; every other line as shipped."""
    text = SBATCH.read_text()
    text = re.sub(r"#SBATCH --ntasks-per-node=\d+", f"#SBATCH --ntasks-per-node={tasks}", text)
    text = re.sub(r"#SBATCH --cpus-per-task=\d+", f"#SBATCH --cpus-per-task={cpus}", text)
    text = re.sub(r"#SBATCH --time=\S+", "#SBATCH --time=00:10:00", text)
    text = re.sub(r"#SBATCH --gpus-per-node=\d+\n", "", text)
    script = folder / "train.sbatch"
    script.write_text(text)
    return script


def training_args(data: Path, *overrides: str) -> list[str]:
    return [*TINY_TRAIN, f"data.root={data}", *STEPS, *overrides]


def submit_training(slurm: SlurmCluster, cwd: Path, data: Path, *overrides: str,
                    sbatch_options: tuple[str, ...] = (), env: dict[str, str] | None = None) -> tuple[int, Path]:
    """The shipped batch script's job running ``fishnet-train`` with these overrides (``sbatch_options``
    on sbatch's command line, which win over the script's; ``env`` added to the job's), and the run
    directory an unnamed run gets."""
    cwd.mkdir(parents=True, exist_ok=True)
    args = training_args(data, *overrides)
    job = slurm.sbatch(*sbatch_options, str(edited_script(cwd)), *args, cwd=cwd, env={**job_env(), **(env or {})})
    return job, cwd / "outputs" / "train" / slurm_run_name(str(job), None, args)


def wait_for_checkpoint(slurm: SlurmCluster, job_id: int, run_dir: Path, step: int, timeout: float = 240) -> dict:
    """Wait until the job's last.pt records at least ``step`` steps; its progress."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = progress_at(run_dir, step)
        if progress is not None:
            return progress
        state = slurm.job(job_id).get("JobState")
        if state not in ("PENDING", "RUNNING", "CONFIGURING"):
            raise AssertionError(f"job {job_id} is {state} before step {step}")
        time.sleep(0.05)
    raise AssertionError(f"job {job_id}: no checkpoint at step {step} after {timeout} s")


@pytest.fixture(scope="session")
def reference_job(slurm, slurm_data, tmp_path_factory) -> Path:
    """An uninterrupted job of the shipped script: its run directory."""
    cwd = tmp_path_factory.mktemp("reference")
    job, run_dir = submit_training(slurm, cwd, slurm_data)
    info = slurm.wait_done(job)
    assert info["JobState"] == "COMPLETED", (info, output(cwd, job))
    return run_dir


def output(cwd: Path, job_id: int) -> str:
    path = cwd / f"slurm-{job_id}.out"
    return path.read_text() if path.exists() else ""
