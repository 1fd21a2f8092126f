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
    """24 training images: 4 steps of 6 per epoch."""
    return write_image_folder(tmp_path_factory.mktemp("tracking") / "data")


def test_step_points_come_every_tracking_every_steps_and_epoch_points_at_each_epochs_last_step(data, tmp_path):
    train(tiny_options(data, "tracking.every_steps=3"), str(tmp_path))
    assert [step for step, _ in scalars(tmp_path, "train/loss")] == [3, 6]
    assert [step for step, _ in scalars(tmp_path, "train/images_per_sec")] == [3, 6]
    assert scalars(tmp_path, "epoch/epoch") == [(4, 1.0), (8, 2.0)]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [value for _, value in scalars(tmp_path, "epoch/train_loss")] == pytest.approx(
        [r["train_loss"] for r in records])


def test_with_no_loggers_nothing_is_tracked(data, tmp_path):
    train(tiny_options(data, "tracking.loggers=[]", "trainer.epochs=1"), str(tmp_path))
    assert not (tmp_path / "tb").exists() and not (tmp_path / "tracking.json").exists()
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["tracking"] == {}


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
