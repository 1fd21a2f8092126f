"""What a training run gives its trackers, in process: the options reach the loop and the trackers, the
tracked run's id lives in tracking.json and the checkpoint, and a restarted run goes on with the same one."""
import json

import pytest
import torch

from fishnet_train.models import create_model
from fishnet_train.models.complexity import multiply_accumulates
from fishnet_train.training.trainer import train

from ..conftest import write_image_folder
from ..helpers import Crash, crash_at, tiny_options
from .test_tensorboard import scalars
from .wandb_files import read_offline_run


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """24 training images: 4 steps of 6 per epoch (the package's data: 8 steps)."""
    return write_image_folder(tmp_path_factory.mktemp("tracking") / "data")


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_step_points_come_every_tracking_every_steps_and_epoch_points_at_each_epochs_last_step(data, tmp_path):
    train(tiny_options(data, "tracking.every_steps=3", "model.ema_decay=0.9"), str(tmp_path))
    assert [step for step, _ in scalars(tmp_path, "train/loss")] == [3, 6]
    assert [step for step, _ in scalars(tmp_path, "train/images_per_sec")] == [3, 6]
    assert scalars(tmp_path, "epoch/epoch") == [(4, 1.0), (8, 2.0)]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for key in ("train_loss", "top1", "ema_top1", "epoch_seconds"):
        assert [value for _, value in scalars(tmp_path, f"epoch/{key}")] == pytest.approx([r[key] for r in records])


@pytest.mark.slow  # a run
def test_every_point_up_to_a_checkpoint_is_in_tensorboards_files_when_the_checkpoint_lands(data, tmp_path):
    on_disk = []

    def look(progress):  # at step 3, one step after the checkpoint of step 2, the process still running
        if progress.step == 3:
            on_disk.extend(step for step, _ in scalars(tmp_path, "train/loss"))

    train(tiny_options(data, "tracking.every_steps=1", "trainer.checkpoint_every_steps=2", "trainer.epochs=1"),
          str(tmp_path), after_step=look)
    assert on_disk[:2] == [1, 2]  # a SIGKILL now leaves them: the resumed run writes the steps from 3 on


@pytest.mark.slow  # a run; the loggers' choice reaching the trackers is also the step-points test's
def test_with_no_loggers_nothing_is_tracked(data, tmp_path):
    train(tiny_options(data, "tracking.loggers=[]", "trainer.epochs=1"), str(tmp_path))
    assert not (tmp_path / "tb").exists() and not (tmp_path / "tracking.json").exists()
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["tracking"] == {}


@pytest.mark.slow  # two runs and W&B's service process
def test_a_crashed_and_resumed_run_continues_one_wandb_run_each_step_once(data, tmp_path):
    overrides = ("tracking.loggers=[wandb]", "tracking.wandb_mode=offline", "tracking.every_steps=1")
    with pytest.raises(Crash):
        train(tiny_options(data, *overrides), str(tmp_path), after_step=crash_at(6))  # last.pt: step 4
    run_id = json.loads((tmp_path / "tracking.json").read_text())["wandb"]["run_id"]
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["tracking"]["wandb"]["run_id"] == run_id
    train(tiny_options(data, *overrides, "trainer.log_every_steps=7"), str(tmp_path))
    first, second = (read_offline_run(folder) for folder in sorted((tmp_path / "wandb").glob("offline-run-*")))
    assert first["run_id"] == second["run_id"] == run_id
    steps = [[row["trainer/step"] for row in run["history"] if "train/loss" in row] for run in (first, second)]
    # Step 5, trained again from step 4's checkpoint, is logged again, with the same loss and rate (W&B may
    # have lost what a killed process logged); step 6 crashed before its point.
    assert steps == [[1, 2, 3, 4, 5], [5, 6, 7, 8]]
    (before,), (again,) = ([row for row in run["history"] if row.get("trainer/step") == 5] for run in (first, second))
    assert (before["train/loss"], before["train/lr"]) == (again["train/loss"], again["train/lr"])
    epochs = [[(row["trainer/step"], row["epoch/epoch"]) for row in run["history"] if "epoch/epoch" in row]
              for run in (first, second)]
    assert epochs == [[(4, 1)], [(8, 2)]]
    assert first["summary"]["outcome"] == "failed" and second["summary"]["outcome"] == "finished"
    assert second["summary"]["checkpoint.last"] == str(tmp_path / "checkpoints" / "last.pt")
    config = second["config"]
    assert config["model.name"] == "fishnet99" and config["trainer.log_every_steps"] == "7"
    model = create_model("fishnet99", num_classes=3)
    assert int(config["run.parameters"]) == sum(p.numel() for p in model.parameters())
    assert int(config["run.macs"]) == multiply_accumulates(model, (32, 32))  # at the demo's 32 px crop


@pytest.mark.slow  # two runs
def test_a_checkpoint_of_another_run_directory_starts_a_branch_with_new_tracked_runs(data, tmp_path):
    overrides = ("tracking.loggers=[wandb]", "tracking.wandb_mode=offline", "tracking.every_steps=1")
    train(tiny_options(data, *overrides, "trainer.epochs=1"), str(tmp_path / "a"))
    branched = f"trainer.resume={tmp_path / 'a' / 'checkpoints' / 'last.pt'}"
    train(tiny_options(data, *overrides, branched), str(tmp_path / "b"))
    a, b = (json.loads((tmp_path / run / "tracking.json").read_text())["wandb"] for run in ("a", "b"))
    assert a["run_id"] != b["run_id"]
    (folder,) = (tmp_path / "b" / "wandb").glob("offline-run-*")
    steps = [row["trainer/step"] for row in read_offline_run(folder)["history"] if "train/loss" in row]
    assert steps == [5, 6, 7, 8]  # the branch's own steps, from the checkpoint's on
