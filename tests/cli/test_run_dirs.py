"""Default run directories: one per run, found again by the same run after a restart or a requeue."""
import sys

import pytest

from fishnet_train.cli.common import run_dir_name, slurm_run_name

from ..helpers import TINY_TRAIN, assert_ok, run_cli


def name_under(monkeypatch, env: dict, argv: list[str]) -> str:
    for key in ("SLURM_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "RANK",
                "WORLD_SIZE", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", ["fishnet-train", *argv])
    return run_dir_name.__wrapped__("outputs/train")


def test_two_commands_in_one_slurm_allocation_get_a_directory_each(monkeypatch):
    job = {"SLURM_JOB_ID": "4242"}
    first = name_under(monkeypatch, job, ["model=fishnet99", "data.root=/d"])
    assert first == name_under(monkeypatch, job, ["model=fishnet99", "data.root=/d"])  # a requeue finds it again
    assert first != name_under(monkeypatch, job, ["model=fishnet150", "data.root=/d"])
    assert first.startswith("outputs/train/slurm-4242-")
    array = name_under(monkeypatch, {**job, "SLURM_ARRAY_TASK_ID": "3"}, ["model=fishnet99", "data.root=/d"])
    assert array.startswith("outputs/train/slurm-4242-3-") and array != first


def test_the_slurm_name_is_the_job_the_array_task_and_the_command_lines_hash():
    assert slurm_run_name("7", None, ["a=1"]) == slurm_run_name("7", None, ["a=1"])
    assert slurm_run_name("7", None, ["a=1"]).startswith("slurm-7-")
    assert slurm_run_name("7", "2", ["a=1"]).startswith("slurm-7-2-")
    assert len({slurm_run_name("7", None, [f"a={i}"]) for i in range(50)}) == 50
    assert slurm_run_name("7", None, ["ab", "c"]) != slurm_run_name("7", None, ["a", "bc"])


def test_other_ranks_and_runs_outside_slurm_are_named_as_before(monkeypatch):
    assert name_under(monkeypatch, {"SLURM_JOB_ID": "9", "SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "2"},
                      ["x=1"]) == "."
    assert name_under(monkeypatch, {"TORCHELASTIC_RUN_ID": "abc"}, ["x=1"]) == "outputs/train/torchrun-abc"


@pytest.mark.slow  # three runs of the console script
def test_two_trainings_in_one_batch_script_do_not_resume_each_other(image_folder, tmp_path):
    env = {"SLURM_JOB_ID": "4242"}  # a batch script's shell: no srun task variables
    steps = ["trainer.epochs=1", "trainer.max_steps_per_epoch=1"]
    for seed in ("1", "2"):
        assert_ok(run_cli("fishnet-train", *TINY_TRAIN, f"data.root={image_folder}", *steps, f"trainer.seed={seed}",
                          cwd=tmp_path, env=env))
    runs = sorted((tmp_path / "outputs" / "train").iterdir())
    assert len(runs) == 2 and all(r.name.startswith("slurm-4242-") for r in runs)
    again = run_cli("fishnet-train", *TINY_TRAIN, f"data.root={image_folder}", *steps, "trainer.seed=1",
                    cwd=tmp_path, env=env)  # the same command, as after a requeue: its own run, resumed
    assert_ok(again)
    assert len(list((tmp_path / "outputs" / "train").iterdir())) == 2 and "resumed from" in again.stdout + again.stderr
