"""Every user error: exit status 2, one line on stderr saying what and how to fix, no traceback."""
import signal

import pytest
import torch

from fishnet_train.models import FishNet, create_model

from ..helpers import (
    TINY_FISHNET, TINY_TRAIN, assert_ok, assert_user_error, run_cli, start_training, wait_for_step,
    write_crafted_pickle,
)
from ..helpers import train_cli as train


# One CLI run per kind of check (the values themselves: tests/test_validation.py, in process); the kinds
# also checked in process elsewhere run with the slow tests, so that make test keeps to its 5 minutes.
SLOW = pytest.mark.slow


@pytest.mark.parametrize("overrides, fragments", [
    (["model=fishnet42"], ["model/fishnet42", "model= one of", "fishnet99"]),
    (["model.name=fishnet42"], ["model.name='fishnet42' is not a known model", "fishnet99"]),
    pytest.param(["data.batch_size=0"], ["data.batch_size must be positive"], marks=SLOW),
    (["data.batch_size=7", "trainer.accum_steps=2"], ["does not split", "trainer.accum_steps=2", "multiple of 2"]),
    (["model.num_classes=5"], ["model.num_classes=5", "3 classes", "model.num_classes=3"]),
    pytest.param(["trainer.amp=fp8"], ["trainer.amp='fp8'", "none, bf16, fp16"], marks=SLOW),
    pytest.param(["trainer.resume=/nonexistent/last.pt"], ["/nonexistent/last.pt", "no such file"], marks=SLOW),
    pytest.param(["model.pretrained=/nonexistent/w.pt"], ["model.pretrained:", "/nonexistent/w.pt", "not found"],
                 marks=SLOW),
])
@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_bad_config_values(image_folder, tmp_path, overrides, fragments):
    assert_user_error(train(image_folder, tmp_path / "run", *overrides), *fragments)


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_missing_data_root(tmp_path):
    result = run_cli("fishnet-train", "experiment=demo", f"data.root={tmp_path / 'nope'}",
                     f"hydra.run.dir={tmp_path / 'r'}")
    assert_user_error(result, str(tmp_path / "nope"), "not a directory")


@pytest.mark.parametrize("override, fragments", [
    ("trainer.epoch=3", ["trainer.epoch", "not in 'TrainerConfig'", "--help"]),
    ("trainer.epochs=many", ["trainer.epochs", "'many'", "Integer"]),
    ("data.crop_scale=3", ["data.crop_scale", "not a ListConfig"]),
    ("experiment=fishnet42_paper", ["experiment/fishnet42_paper", "experiment= one of", "fishnet150_paper"]),
])
def test_composition_mistakes_fail_before_anything_runs(image_folder, tmp_path, override, fragments):
    result = train(image_folder, tmp_path / "run", override)
    assert_user_error(result, *fragments)
    assert not (tmp_path / "run").exists()


@SLOW  # in process: tests/models/test_weights.py
def test_checkpoint_of_another_architecture(image_folder, tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model": FishNet(**TINY_FISHNET, num_classes=3).state_dict()}, path)
    result = run_cli("fishnet-eval", f"checkpoint={path}", f"data.root={image_folder}", "model.name=fishnet99",
                     f"hydra.run.dir={tmp_path / 'e'}")
    assert_user_error(result, "does not fit the model", "another model")


@SLOW  # in process: tests/models/test_weights.py
def test_checkpoint_with_another_class_count(image_folder, tmp_path):
    path = tmp_path / "ten.pt"
    torch.save({"model": create_model("fishnet99", num_classes=10).state_dict()}, path)
    result = run_cli("fishnet-eval", f"checkpoint={path}", f"data.root={image_folder}",
                     f"hydra.run.dir={tmp_path / 'e'}")
    assert_user_error(result, "10 classes", "3 class folders")


@SLOW  # in process: tests/models/test_weights.py
def test_file_that_is_not_a_checkpoint(image_folder, tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint")
    result = run_cli("fishnet-eval", f"checkpoint={path}", f"data.root={image_folder}",
                     f"hydra.run.dir={tmp_path / 'e'}")
    assert_user_error(result, str(path), "not a PyTorch checkpoint")


@SLOW  # in process: tests/models/test_weights.py
def test_missing_checkpoint_path(image_folder, tmp_path):
    result = run_cli("fishnet-eval", f"checkpoint={tmp_path / 'none.pt'}", f"data.root={image_folder}",
                     f"hydra.run.dir={tmp_path / 'e'}")
    assert_user_error(result, "none.pt", "not found")


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_crafted_pickle_checkpoint_is_refused_and_nothing_runs(image_folder, tmp_path):
    path = write_crafted_pickle(tmp_path / "evil.pt")
    result = run_cli("fishnet-eval", f"checkpoint={path}", f"data.root={image_folder}",
                     f"hydra.run.dir={tmp_path / 'e'}", cwd=tmp_path)
    assert_user_error(result, str(path), "--trust")
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_hydra_full_error_shows_the_traceback(tmp_path):
    result = run_cli("fishnet-train", "experiment=demo", f"data.root={tmp_path / 'nope'}",
                     f"hydra.run.dir={tmp_path / 'r'}", env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode != 0 and "Traceback" in result.stderr and "UserError" in result.stderr


def test_a_bad_sweep_value_is_refused_before_any_job_runs(image_folder, tmp_path):
    result = run_cli("fishnet-train", "-m", *TINY_TRAIN, f"data.root={image_folder}", "optim.lr=0.1,-1",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert_user_error(result, "optim.lr must be zero or more, got -1")
    assert not (tmp_path / "sweep").exists()


def test_a_typo_next_to_cfg_or_help_is_refused_too(tmp_path):
    for flag in (["--cfg", "job"], ["--help"]):
        assert_user_error(run_cli("fishnet-train", *flag, "trainer.epoch=3", cwd=tmp_path), "trainer.epoch")


@pytest.mark.slow  # over 6 s on 2 cores
def test_an_input_error_under_the_local_launcher_is_printed_once(image_folder, tmp_path):
    result = train(image_folder, tmp_path / "run", "trainer.devices=2", "model.num_classes=5")
    assert_user_error(result, "model.num_classes=5", "3 classes")


@pytest.mark.slow  # several seconds: make test keeps to its 5 minutes
def test_bad_images_error_in_a_loader_worker_is_one_line(image_folder, tmp_path):
    (image_folder / "train" / "class_1" / "broken.jpg").write_bytes(b"")
    files = sum(1 for p in (image_folder / "train").rglob("*") if p.is_file())
    result = train(image_folder, tmp_path / "run", "trainer.epochs=1", "data.workers=1", f"data.batch_size={files}",
                   "data.bad_images=error")
    assert_user_error(result, "cannot decode", "broken.jpg", "data.bad_images=skip")


@pytest.mark.slow
def test_a_second_run_on_a_busy_directory_is_refused_and_touches_nothing(image_folder, tmp_path):
    run_dir = tmp_path / "run"
    first = start_training(image_folder, run_dir, "trainer.epochs=3", "trainer.checkpoint_every_steps=1")
    try:
        wait_for_step(run_dir, 1, first)
        before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file() and "checkpoints" not in p.parts
                  and p.name not in ("train.log", "metrics.jsonl") and "tb" not in p.parts}
        second = train(image_folder, run_dir, "trainer.epochs=3")
        assert_user_error(second, str(run_dir), f"in use by pid {first.pid}", "hydra.run.dir")
        assert before == {p: p.stat().st_mtime_ns for p in before}
    finally:
        first.kill()
        first.wait()
    # the killed run left no stale lock
    assert_ok(train(image_folder, run_dir, "trainer.epochs=1", "trainer.resume=null"))


def test_a_bad_pair_of_sweep_values_is_refused_before_any_job_runs(image_folder, tmp_path):
    result = run_cli("fishnet-train", "-m", *TINY_TRAIN, f"data.root={image_folder}", "data.val_resize=256,64",
                     "data.val_crop=32,128", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert_user_error(result, "data.val_crop=128 is larger than data.val_resize=64")
    assert not (tmp_path / "sweep").exists()


def test_torchrun_restarts_without_a_rendezvous_id_are_refused_in_one_line(image_folder, tmp_path):
    # What a worker of `torchrun --nnodes 2 --max-restarts 1` (static or c10d, no --rdzv-id) sees.
    torchrun = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "TORCHELASTIC_RUN_ID": "none",
                "TORCHELASTIC_MAX_RESTARTS": "1"}
    result = run_cli("fishnet-train", *TINY_TRAIN, f"data.root={image_folder}", cwd=tmp_path, env=torchrun)
    assert_user_error(result, "error: torchrun without --rdzv-id", "name=<name>", "hydra.run.dir")
    assert not (tmp_path / "outputs").exists()


def test_the_launcher_exit_code_says_which_signal_stopped_it(capsys):
    from fishnet_train.cli.jobs import launcher_signalled

    assert launcher_signalled(signal.SIGINT) == 130
    assert launcher_signalled(signal.SIGUSR2) == 75
    assert launcher_signalled(signal.SIGHUP) == 128 + signal.SIGHUP
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("interrupted") and err[1].startswith("preempted by SIGUSR2: the workers saved last.pt")
    assert err[2].startswith("stopped by SIGHUP")
