"""Run directories: one per run, found again by the same run after a restart, a requeue or a resubmission."""
from __future__ import annotations

import sys

import pytest

from fishnet_train.cli.common import run_dir_name, slurm_run_name

from ..helpers import TINY_TRAIN, assert_ok, assert_user_error, run_cli


def name_under(monkeypatch, env: dict, argv: list[str], name: str | None = None) -> str:
    for key in ("SLURM_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "RANK",
                "WORLD_SIZE", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", ["fishnet-train", *argv])
    return run_dir_name.__wrapped__("outputs/train", name)


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


def test_a_named_run_has_one_directory_in_every_job_and_launcher_and_one_per_array_task(monkeypatch):
    argv = ["model=fishnet99", "data.root=/d"]
    for env in ({}, {"SLURM_JOB_ID": "1"}, {"SLURM_JOB_ID": "2"}, {"TORCHELASTIC_RUN_ID": "abc"},
                {"SLURM_JOB_ID": "3", "TORCHELASTIC_RUN_ID": "abc"}):
        assert name_under(monkeypatch, env, argv, "paper") == "outputs/train/paper"
    assert name_under(monkeypatch, {"SLURM_JOB_ID": "4", "SLURM_ARRAY_TASK_ID": "3"}, argv, "paper") == \
        "outputs/train/paper-3"
    assert name_under(monkeypatch, {"SLURM_JOB_ID": "4", "SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "2"}, argv,
                      "paper") == "."


def test_torchrun_in_a_slurm_job_takes_its_rdzv_id_but_not_standalones_random_one(monkeypatch):
    job = {"SLURM_JOB_ID": "77"}
    assert name_under(monkeypatch, {**job, "TORCHELASTIC_RUN_ID": "77"}, ["x=1"]) == "outputs/train/torchrun-77"
    standalone = {**job, "TORCHELASTIC_RUN_ID": "0b6a1f5e-3c1d-4f0e-9a53-3f0c2e8d9b11"}  # drawn at each launch
    assert name_under(monkeypatch, standalone, ["x=1"]).startswith("outputs/train/slurm-77-")
    assert name_under(monkeypatch, {"TORCHELASTIC_RUN_ID": standalone["TORCHELASTIC_RUN_ID"]}, ["x=1"]) == \
        f"outputs/train/torchrun-{standalone['TORCHELASTIC_RUN_ID']}"  # outside SLURM: the launch's own


@pytest.mark.parametrize("name", ["a/b", "..", ".hidden", "-x", "a b", "x" * 129])
def test_a_name_that_is_not_one_directory_is_refused_in_one_line(name, tmp_path):
    result = run_cli("fishnet-train", *TINY_TRAIN, "data.root=/d", f"name='{name}'", cwd=tmp_path)
    assert_user_error(result, f"name={name!r}: a run name is one directory name")
    assert not (tmp_path / "outputs").exists()


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


@pytest.mark.slow  # two runs of the console script
def test_a_named_run_submitted_again_as_another_job_resumes_in_its_directory(image_folder, tmp_path):
    steps = ["trainer.epochs=2", "trainer.max_steps_per_epoch=1", "name=paper"]
    assert_ok(run_cli("fishnet-train", *TINY_TRAIN, f"data.root={image_folder}", *steps[1:], "trainer.epochs=1",
                      cwd=tmp_path, env={"SLURM_JOB_ID": "1"}))
    run = tmp_path / "outputs" / "train" / "paper"
    record = (run / ".hydra" / "overrides.yaml").read_text()
    again = run_cli("fishnet-train", *TINY_TRAIN, f"data.root={image_folder}", *steps, cwd=tmp_path,
                    env={"SLURM_JOB_ID": "2"})
    assert_user_error(again, f"{run} was started with trainer.epochs=1, this command has trainer.epochs=2")
    assert (run / ".hydra" / "overrides.yaml").read_text() == record  # refused before Hydra wrote its record
    again = run_cli("fishnet-train", *TINY_TRAIN, f"data.root={image_folder}", *steps[1:], "trainer.epochs=1",
                    "data.workers=1", cwd=tmp_path, env={"SLURM_JOB_ID": "2"})
    assert_ok(again)
    assert [p.name for p in (tmp_path / "outputs" / "train").iterdir()] == ["paper"]
    assert f"run directory {run}: resumes epoch 2, step 0 of it" in again.stdout + again.stderr


@pytest.mark.parametrize("naming, refused", [("name=paper", False), ("++name=paper", False), ("name=null", True),
                                             ("hydra.run.dir=", True)])
def test_a_named_run_may_restart_under_torchrun_without_a_rendezvous_id(naming, refused, tmp_path):
    from fishnet_train.cli.common import check_restartable
    from fishnet_train.errors import UserError

    env = {"TORCHELASTIC_RUN_ID": "none", "TORCHELASTIC_MAX_RESTARTS": "1"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.delenv("SLURM_JOB_ID", raising=False)
        if refused:
            with pytest.raises(UserError, match="torchrun without --rdzv-id"):
                check_restartable([naming])
        else:
            check_restartable([naming])
