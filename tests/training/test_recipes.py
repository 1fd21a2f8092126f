"""The modern recipe's options in a real training run: each takes effect, and all together resume exactly."""
import random

import pytest

from fishnet_train.errors import CheckpointError
from fishnet_train.models import create_model
from fishnet_train.training.build import load_pretrained
from fishnet_train.training.trainer import train

from ..conftest import write_image_folder
from ..helpers import Crash, assert_same_tensors, crash_at, eval_in_process, metrics, saved_state, tiny_options
from .test_trainer import _differ, _one_step, _restore_process_settings, step_counter  # noqa: F401

# Every option of the modern toolkit at once, at sizes a CPU test can afford.
EVERYTHING = [
    "data.auto_augment=ta_wide", "data.random_erase=0.5", "data.mixup_alpha=0.2", "data.cutmix_alpha=1.0",
    "data.repeated_aug=2", "optim=lamb", "optim.lr=0.002", "loss.name=bce", "loss.label_smoothing=0.1",
    "loss.bce_target_thresh=0.2", "model.ema_decay=0.9", "model.ema_every_steps=2", "model.zero_init_residual=true",
    "data.train_crop=64", "data.progressive_min_crop=32", "data.progressive_epochs=[0,1]",
    "trainer.best_by=ema_top1", "trainer.checkpoint_every_steps=1",
]


@pytest.mark.slow  # 12 one-step runs: 30 s (each option's op is checked in tests/data and tests/training in process)
@pytest.mark.parametrize("option", [
    "data.auto_augment=ra", "data.auto_augment=ta_wide", "data.auto_augment=aa", "data.random_erase=1.0",
    "data.mixup_alpha=1.0", "data.cutmix_alpha=1.0", "data.repeated_aug=3", "loss.name=bce",
    "model.zero_init_residual=true", "optim=adamw", "optim=lamb", "optim=lars",
])
def test_each_modern_option_changes_what_the_first_step_learns(image_folder, tmp_path, option):
    baseline = _one_step(image_folder, tmp_path / "baseline", "data.hflip=false")
    assert _differ(baseline, _one_step(image_folder, tmp_path / "option", "data.hflip=false", option))


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_progressive_resizing_feeds_the_small_crop_first_then_the_full_one(image_folder, tmp_path, monkeypatch):
    from fishnet_train.data import BatchPreprocess

    sizes = []
    original = BatchPreprocess.__call__

    def spy(self, images, alpha=None):
        sizes.append(images.shape[1])
        return original(self, images, alpha)

    monkeypatch.setattr(BatchPreprocess, "__call__", spy)
    train(tiny_options(image_folder, "data.train_crop=64", "data.progressive_min_crop=32",
                       "data.progressive_epochs=[0,1]", "trainer.max_steps_per_epoch=2"), str(tmp_path / "run"))
    val = 32  # data.val_crop: validation keeps its protocol
    assert sizes == [32, 32, val, val, 64, 64, val, val]  # 2 steps, 2 val batches (9 images, batch 6) per epoch


@pytest.mark.slow  # 18 s; tests/cli/test_distributed.py kills and resumes a real process with them too
def test_a_crash_with_every_modern_option_on_resumes_bit_identical(image_folder, tmp_path):
    reference = tmp_path / "reference"
    train(tiny_options(image_folder, *EVERYTHING), str(reference))
    run_dir = tmp_path / "crashed"
    crash_step = random.Random(3).randint(5, 7)  # in the second epoch (4 steps each), after its first step
    with pytest.raises(Crash):
        train(tiny_options(image_folder, *EVERYTHING), str(run_dir), after_step=crash_at(crash_step))
    steps = []
    train(tiny_options(image_folder, *EVERYTHING), str(run_dir), after_step=step_counter(steps))
    assert steps == list(range(crash_step, 9))
    a, b = saved_state(reference), saved_state(run_dir)
    assert_same_tensors(a["model"], b["model"])
    assert_same_tensors(a["model_ema"], b["model_ema"])
    assert _differ(a["model"], a["model_ema"])  # the EMA was on: the average is not the weights
    assert a["ema_updates"] == b["ema_updates"] == 2  # the warmup's 4 steps reset the count: 6 copies, 8 averages
    for i, state in a["optimizer"]["state"].items():
        assert_same_tensors(state, b["optimizer"]["state"][i])  # LAMB's moments and step
    exact = ("step", "val_loss", "top1", "top5", "ema_val_loss", "ema_top1", "ema_top5", "lr", "best_top1")
    figures = [[{k: r[k] for k in exact} for r in metrics(run)] for run in (reference, run_dir)]
    assert figures[0] == figures[1]


@pytest.mark.slow  # several seconds: make test keeps to its 5 minutes
def test_ema_weights_are_validated_chosen_for_best_and_read_by_eval_and_pretrained(tmp_path):
    # The PNG folder's run is one whose best epoch by the EMA's top-1 differs from the weights' (on the
    # JPEG folder both are epoch 3); the test is about choosing by the EMA, not about decoding.
    image_folder = write_image_folder(tmp_path / "data", ext="png")
    run_dir = tmp_path / "run"
    last = train(tiny_options(image_folder, "model.ema_decay=0.5", "model.ema_every_steps=1", "trainer.epochs=3",
                              "trainer.best_by=ema_top1"), str(run_dir))
    records = metrics(run_dir)
    assert {"ema_top1", "ema_top5", "ema_val_loss"} <= set(last)
    by_ema = max(records, key=lambda r: r["ema_top1"])["epoch"]
    assert by_ema != max(records, key=lambda r: r["top1"])["epoch"]  # this run tells the two apart
    assert last["best_epoch"] == by_ema and saved_state(run_dir, "best.pt")["progress"]["epoch"] == by_ema
    state = saved_state(run_dir)
    assert _differ(state["model"], state["model_ema"])
    ckpt = run_dir / "checkpoints" / "last.pt"
    ema = eval_in_process(ckpt, image_folder, tmp_path / "ema", "model.use_ema=true")
    raw = eval_in_process(ckpt, image_folder, tmp_path / "raw")
    assert ema.top1 == pytest.approx(last["ema_top1"]) and ema.loss == pytest.approx(last["ema_val_loss"], rel=1e-5)
    assert raw.top1 == pytest.approx(last["top1"]) and raw.loss == pytest.approx(last["val_loss"], rel=1e-5)
    model = create_model("fishnet99", num_classes=3)
    load_pretrained(model, str(ckpt), ema=True)  # model.pretrained with model.use_ema
    assert_same_tensors(model.state_dict(), state["model_ema"])


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_asking_for_ema_weights_a_checkpoint_lacks_is_one_clear_error(image_folder, tmp_path):
    train(tiny_options(image_folder, "trainer.epochs=1", "trainer.max_steps_per_epoch=1"), str(tmp_path / "run"))
    with pytest.raises(CheckpointError, match="holds no EMA weights .* set model.use_ema=false"):
        eval_in_process(tmp_path / "run" / "checkpoints" / "last.pt", image_folder, tmp_path / "eval",
                        "model.use_ema=true")
