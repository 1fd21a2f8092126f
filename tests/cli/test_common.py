"""What every console script does before its job starts, in this process: the composed config checked (each
sweep value too), one line for each kind of mistake, the run directory found and locked, a resubmission's
recipe checked, the restart rule for torchrun."""
from __future__ import annotations

import hashlib
import os
import sys

import pytest
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from fishnet_train.cli import common
from fishnet_train.cli.common import (
    check_and_lock, check_overrides, check_restartable, check_resubmission, hydra_subdir, one_line,
    override_variants, planned_world_size, slurm_run_name,
)
from fishnet_train.config import to_options
from fishnet_train.errors import UserError

from ..helpers import compose_train

LAUNCHER_VARIABLES = ("SLURM_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "RANK",
                      "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID", "TORCHELASTIC_MAX_RESTARTS")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for key in LAUNCHER_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    common.run_dir_name.cache_clear()
    yield monkeypatch
    common.run_dir_name.cache_clear()


def refusal(args: list[str]) -> str:
    os.environ["HYDRA_FULL_ERROR"] = "1"  # the exception itself, not the exit
    try:
        with pytest.raises(Exception) as raised:
            check_and_lock_args(args)
    finally:
        del os.environ["HYDRA_FULL_ERROR"]
    return one_line(raised.value)


def check_and_lock_args(args: list[str]):
    sys_argv = sys.argv
    sys.argv = ["fishnet-train", *args]
    try:
        return check_and_lock("train")
    finally:
        sys.argv = sys_argv


def test_a_single_run_is_checked_named_and_locked_before_hydra_starts(clean_env, tmp_path, capsys):
    lock = check_and_lock_args(["data.root=/d", "name=paper"])
    try:
        assert lock is not None and (tmp_path / "outputs" / "train" / "paper").is_dir()
        with pytest.raises(SystemExit) as refused:
            check_and_lock_args(["data.root=/d", "name=paper"])  # the same run, started twice
        assert refused.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: outputs/train/paper is in use by pid ") and err.count("\n") == 1
    finally:
        lock.release()


@pytest.mark.parametrize("args, line", [
    (["data.root=/d", "optim.momentum=2"], r"optim.momentum must be in \[0, 1\), got 2"),
    (["data.root=/d", "model=nope"], "no 'model/nope' config; choose model= one of "),
    (["optim.lr=0.1"], "data.root is required: set data.root=..."),
    (["data.root=/d", "trainer.epochs=x"], r"trainer.epochs=x: Value 'x' .* could not be converted to Integer \(see"),
    (["-m", "data.root=/d", "optim.momentum=0.9,2"], r"optim.momentum must be in \[0, 1\), got 2"),
    (["data.root=/d", "name=a/b"], "name='a/b': a run name is one directory name"),
])
def test_each_kind_of_mistake_is_one_line_naming_the_key(clean_env, args, line):
    import re

    message = refusal(args)
    assert re.search(line, message) and "\n" not in message, message


def test_a_missing_group_option_names_the_choices():
    from hydra import compose, initialize_config_module

    with initialize_config_module("fishnet_train.conf", version_base="1.3"), \
            pytest.raises(MissingConfigException) as raised:
        compose("train", overrides=["data.root=/d", "optim=adam"])
    assert one_line(raised.value) == "no 'optim/adam' config; choose optim= one of adamw, lamb, lars, sgd"


def test_sweeps_flags_and_other_ranks_lock_nothing(clean_env):
    assert check_overrides("train", ["-m", "data.root=/d", "optim.lr=0.1,0.2"]) is None
    assert check_overrides("train", ["--cfg", "job"]) is None  # composition only, data.root may be missing
    clean_env.setenv("RANK", "1")
    clean_env.setenv("WORLD_SIZE", "2")
    assert check_overrides("train", ["data.root=/d"]) is None
    assert hydra_subdir(".hydra") is None
    clean_env.setenv("RANK", "0")
    assert hydra_subdir(".hydra") == ".hydra"


def test_a_single_runs_directory_is_returned_for_rank_0(clean_env):
    assert check_overrides("train", ["data.root=/d", "name=paper"]) == os.path.join("outputs", "train", "paper")
    assert check_overrides("train", ["data.root=/d", "hydra.run.dir=elsewhere"]) == "elsewhere"


def test_every_combination_of_few_sweeps_and_each_value_of_many_is_checked():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parse = OverridesParser.create().parse_overrides
    few = list(override_variants(parse(["a=1,2", "b=3,4", "c=5"])))
    assert few == [["a=1", "b=3", "c=5"], ["a=1", "b=4", "c=5"], ["a=2", "b=3", "c=5"], ["a=2", "b=4", "c=5"]]
    many = list(override_variants(parse([f"k{i}=1,2" for i in range(7)])))  # 128 combinations: each value once
    assert len(many) == 8 and many[0] == [f"k{i}=1" for i in range(7)]
    assert many[3] == ["k0=1", "k1=1", "k2=2", "k3=1", "k4=1", "k5=1", "k6=1"]
    assert list(override_variants(parse(["a=glob(*)", "b=1"]))) == [["b=1"]]  # listed by Hydra in the job


def test_the_planned_world_size_is_the_launchers_or_a_number_of_devices(clean_env):
    assert planned_world_size(compose_train("data.root=/d", "trainer.devices=3")) == 3
    assert planned_world_size(compose_train("data.root=/d")) is None  # auto: the GPUs decide
    clean_env.setenv("SLURM_PROCID", "0")
    clean_env.setenv("SLURM_STEP_NUM_TASKS", "4")
    assert planned_world_size(compose_train("data.root=/d", "trainer.devices=3")) == 4


def test_the_slurm_name_is_the_job_and_the_sha1_of_the_arguments_joined_by_nul():
    args = ["model=fishnet99", "data.root=/d\udcff"]  # a path that is not UTF-8, as os.fsdecode gives it
    digest = hashlib.sha1("\0".join(args).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    assert slurm_run_name("7", None, args) == f"slurm-7-{digest}"
    assert slurm_run_name("7", "3", args) == f"slurm-7-3-{digest}"


@pytest.mark.parametrize("env, args, refused", [
    ({"TORCHELASTIC_MAX_RESTARTS": "1"}, [], True),  # no run id at all
    ({"TORCHELASTIC_MAX_RESTARTS": "1", "TORCHELASTIC_RUN_ID": "none"}, [], True),
    ({"TORCHELASTIC_MAX_RESTARTS": "1", "TORCHELASTIC_RUN_ID": "job7"}, [], False),
    ({"TORCHELASTIC_MAX_RESTARTS": "1", "SLURM_JOB_ID": "7"}, [], False),
    ({"TORCHELASTIC_MAX_RESTARTS": "0"}, [], False),
    ({"TORCHELASTIC_MAX_RESTARTS": ""}, [], False),
    ({}, [], False),
    ({"TORCHELASTIC_MAX_RESTARTS": "1"}, ["hydra.run.dir=/runs/a"], False),
    ({"TORCHELASTIC_MAX_RESTARTS": "1"}, ["hydra.sweep.dir=/runs/a"], False),
    ({"TORCHELASTIC_MAX_RESTARTS": "2"}, ["name=paper"], False),
    ({"TORCHELASTIC_MAX_RESTARTS": "1"}, ["name=null"], True),
    ({"TORCHELASTIC_MAX_RESTARTS": "1"}, ["model.name=fishnet99"], True),  # not the run's name
])
def test_torchrun_restarts_need_a_name_for_the_run(clean_env, env, args, refused):
    for key, value in env.items():
        clean_env.setenv(key, value)
    if refused:
        with pytest.raises(UserError, match="^torchrun without --rdzv-id gives its workers no name"):
            check_restartable(args)
    else:
        check_restartable(args)


def resumable_run(run_dir, *overrides: str):
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"")
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(compose_train("data.root=/d", *overrides)))


def test_a_resubmission_is_checked_against_the_runs_config_before_hydra_starts(tmp_path):
    resumable_run(tmp_path / "run", "optim.lr_base_batch=64")
    scaled = to_options(compose_train("data.root=/d", "optim.lr_base_batch=64"))
    config = OmegaConf.load(tmp_path / "run" / "config.yaml")
    config.optim.lr, config.optim.lr_base_batch = scaled.optim.lr * 4, None  # the rate in use, as written
    OmegaConf.save(config, tmp_path / "run" / "config.yaml")
    check_resubmission(scaled, str(tmp_path / "run"))  # the same command: its rate scaled alike
    with pytest.raises(UserError, match=f"^{tmp_path / 'run'} was started with optim.momentum=0.9, this command "
                                        "has optim.momentum=0.8"):
        check_resubmission(to_options(compose_train("data.root=/d", "optim.lr_base_batch=64",
                                                    "optim.momentum=0.8")), str(tmp_path / "run"))
    changed = to_options(compose_train("data.root=/d", "optim.momentum=0.8", "trainer.resume=null"))
    check_resubmission(changed, str(tmp_path / "run"))  # a fresh start: no recipe to keep


def test_rank_0_of_several_leaves_the_recipe_to_the_job_which_refuses_on_every_rank(clean_env, tmp_path):
    resumable_run(tmp_path / "outputs" / "train" / "paper")
    with pytest.raises(UserError, match="was started with optim.momentum=0.9"):
        check_overrides("train", ["data.root=/d", "name=paper", "optim.momentum=0.8"])
    clean_env.setenv("RANK", "0")
    clean_env.setenv("WORLD_SIZE", "2")
    assert check_overrides("train", ["data.root=/d", "name=paper", "optim.momentum=0.8"]) == \
        os.path.join("outputs", "train", "paper")


def test_without_a_checkpoint_or_a_readable_config_the_trainer_decides(tmp_path):
    changed = to_options(compose_train("data.root=/d", "optim.momentum=0.8"))
    (tmp_path / "new").mkdir()
    check_resubmission(changed, str(tmp_path / "new"))
    resumable_run(tmp_path / "broken")
    (tmp_path / "broken" / "config.yaml").write_text("{not yaml")
    check_resubmission(changed, str(tmp_path / "broken"))
    (tmp_path / "broken" / "config.yaml").unlink()
    check_resubmission(changed, str(tmp_path / "broken"))
