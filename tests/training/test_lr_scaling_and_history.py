"""The rate scaled to the global batch (``optim.lr_base_batch``) and the epoch checkpoints kept beside last.pt
(``trainer.keep_epochs``), through a run that crashes and resumes."""
import dataclasses
import math

import pytest
import torch
import yaml

from fishnet_train.config import OptimConfig
from fishnet_train.recipe import resolve_lr
from fishnet_train.training.build import build_schedule
from fishnet_train.training.checkpoint import keep_epoch_checkpoint
from fishnet_train.training.trainer import train

from ..helpers import Crash, crash_at, metrics, saved_state


@pytest.mark.parametrize("name, lr, base, batch, expected", [
    ("sgd", 0.1, 256, 1024, 0.4),  # Goyal et al.: linear
    ("lars", 0.1, 256, 128, 0.05),
    ("sgd", 0.1, None, 1024, 0.1),  # null: as given
    ("adamw", 1e-3, 256, 1024, 2e-3),  # square root
    ("lamb", 5e-3, 4096, 1024, 2.5e-3),
])
def test_the_rate_scales_linearly_for_sgd_and_by_the_square_root_for_adaptive_optimizers(name, lr, base, batch,
                                                                                         expected):
    assert OptimConfig(name=name, lr=lr, lr_base_batch=base).lr_for_batch(batch) == pytest.approx(expected)


def test_a_cosine_floor_above_the_scaled_rate_is_refused(tiny_cfg):
    from fishnet_train.errors import UserError
    from fishnet_train.validation import check_options

    with pytest.raises(UserError, match=r"schedule.min_lr must be in \[0, 0.001\], got 0.0015"):
        # 0.002 for a batch of 12 is 0.001 for the run's 6: a floor of 0.0015 would be a rise
        check_options(tiny_cfg("schedule=cosine", "schedule.min_lr=0.0015", "optim.lr_base_batch=12"))
    check_options(tiny_cfg("schedule=cosine", "schedule.min_lr=0.0015"))


def test_the_resolved_options_hold_the_rate_in_use_so_that_running_them_again_scales_nothing_twice(tiny_cfg):
    options, note = resolve_lr(tiny_cfg("optim.lr_base_batch=3", "optim.name=adamw", "optim.lr=0.01"))
    assert options.optim.lr == pytest.approx(0.01 * math.sqrt(2)) and options.optim.lr_base_batch is None
    assert note == "optim.lr 0.01 for a batch of 3 is 0.0141421 for the global batch of 6 (square root)"
    assert resolve_lr(options) == (options, None)


@pytest.mark.slow  # over 6 s on 2 cores
def test_a_scaled_rate_and_the_epoch_history_survive_a_crash_and_resume(tiny_cfg, tmp_path):
    options = tiny_cfg("trainer.epochs=3", "optim.lr_base_batch=3", "trainer.keep_epochs=2")  # batch 6: lr x2
    run_dir = tmp_path / "run"
    with pytest.raises(Crash):
        train(options, str(run_dir), after_step=crash_at(6))  # in epoch 2 of 3 (4 steps each)
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("epoch-*.pt")) == ["epoch-0001.pt"]
    train(options, str(run_dir))
    scaled = dataclasses.replace(options.optim, lr=2 * options.optim.lr)
    schedule = build_schedule(scaled, options.schedule, steps_per_epoch=4, epochs=3)
    assert [r["lr"] for r in metrics(run_dir)] == pytest.approx([schedule(s - 1) for s in (4, 8, 12)])
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())["optim"]
    assert (saved["lr"], saved["lr_base_batch"]) == (pytest.approx(0.004), None)
    kept = sorted(p.name for p in (run_dir / "checkpoints").glob("epoch-*.pt"))
    assert kept == ["epoch-0002.pt", "epoch-0003.pt"]
    last, third = saved_state(run_dir), saved_state(run_dir, "epoch-0003.pt")
    assert all(torch.equal(last["model"][k], third["model"][k]) for k in last["model"])
    assert saved_state(run_dir, "epoch-0002.pt")["progress"]["epoch"] == 2


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_without_keep_epochs_only_last_and_best_are_written(tiny_cfg, tmp_path):
    train(tiny_cfg("trainer.epochs=1"), str(tmp_path / "run"))
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


def test_the_history_keeps_the_newest_epochs_and_leaves_other_files_alone(tmp_path):
    for name in ("last.pt", "best.pt", "epoch-0001.pt", "epoch-0002.pt", "epoch-0003.pt", "epoch-notes.txt"):
        (tmp_path / name).write_bytes(name.encode())
    keep_epoch_checkpoint(str(tmp_path), 3, keep=2)  # epoch 3 again (a resume from before it): replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best.pt", "epoch-0002.pt", "epoch-0003.pt", "epoch-notes.txt", "last.pt"]
    assert (tmp_path / "epoch-0003.pt").read_bytes() == b"last.pt"


@pytest.mark.slow  # over 6 s on 2 cores
def test_a_run_killed_between_last_pt_and_its_epoch_copy_gets_the_copy_on_resume(tiny_cfg, tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_cfg("trainer.epochs=2", "trainer.keep_epochs=3"), str(run_dir))
    (run_dir / "checkpoints" / "epoch-0002.pt").unlink()  # as if killed right after last.pt
    # one more epoch than the first run's: named, a deliberate change of its recipe
    last = run_dir / "checkpoints" / "last.pt"
    train(tiny_cfg("trainer.epochs=3", "trainer.keep_epochs=3", f"trainer.resume={last}"), str(run_dir))
    kept = sorted(p.name for p in (run_dir / "checkpoints").glob("epoch-*.pt"))
    assert kept == ["epoch-0001.pt", "epoch-0002.pt", "epoch-0003.pt"]
    assert saved_state(run_dir, "epoch-0002.pt")["progress"]["epoch"] == 2
