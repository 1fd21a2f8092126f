import errno
import os
import random
import subprocess
import sys
import textwrap

import pytest
import torch

from fishnet_train.errors import CheckpointError, UserError
from fishnet_train.models import FishNet
from fishnet_train.training.checkpoint import (
    Progress, check_same_optimizer, copy_atomic, keep_epoch_checkpoint, load_training_state, restore_training_state,
    resume_path, rng_state, save_atomic, set_rng_state, training_state, write_atomic,
)
from fishnet_train.training.ema import WeightAverage

from ..helpers import TINY_FISHNET


def test_atomic_save_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "last.pt"
    save_atomic({"v": torch.tensor(1)}, str(path))
    save_atomic({"v": torch.tensor(2)}, str(path))
    assert torch.load(path, weights_only=True)["v"].item() == 2
    assert os.listdir(tmp_path) == ["last.pt"]


def test_full_disk_keeps_the_previous_checkpoint_and_says_so(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_atomic({"v": torch.tensor(1)}, str(path))

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(UserError, match="disk is full.*previous checkpoint there is intact"):
        save_atomic({"v": torch.tensor(2)}, str(path))
    assert torch.load(path, weights_only=True)["v"].item() == 1
    assert os.listdir(tmp_path) == ["last.pt"]


def test_best_copy_on_a_full_disk_keeps_the_previous_best_and_says_so(tmp_path, monkeypatch):
    last, best = tmp_path / "last.pt", tmp_path / "best.pt"
    save_atomic({"v": torch.tensor(1)}, str(last))
    copy_atomic(str(last), str(best))
    save_atomic({"v": torch.tensor(2)}, str(last))

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("shutil.copyfileobj", no_space)
    with pytest.raises(UserError, match="best.pt: the disk is full.*previous checkpoint there is intact"):
        copy_atomic(str(last), str(best))
    assert torch.load(best, weights_only=True)["v"].item() == 1
    assert sorted(os.listdir(tmp_path)) == ["best.pt", "last.pt"]
    monkeypatch.undo()
    copy_atomic(str(last), str(best))
    assert torch.load(best, weights_only=True)["v"].item() == 2


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_process_killed_while_writing_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "last.pt"
    save_atomic({"v": torch.tensor(1)}, str(path))
    # The child starts a large save and SIGKILLs itself in the middle of writing it.
    script = textwrap.dedent(f"""
        import os, signal, torch
        from fishnet_train.training import checkpoint
        real_save = torch.save
        def dying_save(obj, f):
            f.write(b"partial bytes")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        checkpoint.torch.save = dying_save
        checkpoint.save_atomic({{"v": torch.zeros(1000)}}, {str(path)!r})
    """)
    result = subprocess.run([sys.executable, "-c", script])
    assert result.returncode == -9
    assert torch.load(path, weights_only=True)["v"].item() == 1


def test_ctrl_c_during_a_save_lets_the_save_finish_then_interrupts(tmp_path, monkeypatch):
    import signal

    from fishnet_train.training import checkpoint

    real_save = torch.save

    def save_interrupted_midway(obj, f):
        os.kill(os.getpid(), signal.SIGINT)  # arrives while the file is being written
        real_save(obj, f)

    monkeypatch.setattr(checkpoint.torch, "save", save_interrupted_midway)
    path = tmp_path / "last.pt"
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"v": torch.tensor(3)}, str(path))
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["v"].item() == 3
    assert os.listdir(tmp_path) == ["last.pt"]


def test_auto_resume_takes_last_pt_and_clears_temporaries_of_a_killed_save(tmp_path):
    assert resume_path("auto", str(tmp_path)) is None
    save_atomic({"v": torch.tensor(1)}, str(tmp_path / "last.pt"))
    (tmp_path / "last.pt.tmp.1234").write_bytes(b"half a checkpoint")
    assert resume_path("auto", str(tmp_path)) == str(tmp_path / "last.pt")
    assert os.listdir(tmp_path) == ["last.pt"]
    assert resume_path("null", str(tmp_path)) is None


def test_resume_from_a_missing_file_is_a_one_line_error(tmp_path):
    with pytest.raises(UserError, match="no such file .*use auto, null or a checkpoint path"):
        resume_path(str(tmp_path / "nope.pt"), str(tmp_path))


def test_a_cpu_run_saves_no_gpu_generator_even_where_a_gpu_is_visible(monkeypatch):
    from fishnet_train.training.checkpoint import rng_state, set_rng_state

    def no_gpu_here(*args, **kwargs):
        raise AssertionError("a CPU run touched CUDA")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", no_gpu_here)
    monkeypatch.setattr(torch.cuda, "set_rng_state", no_gpu_here)
    state = rng_state(torch.device("cpu"))
    assert set(state) == {"torch", "python"}
    set_rng_state({**state, "cuda": torch.zeros(8, dtype=torch.uint8)}, torch.device("cpu"))  # a GPU run's file


@pytest.mark.parametrize("error, said", [
    (OSError(errno.EACCES, "Permission denied"), "could not write {}: Permission denied; the previous"),
    (OSError("the device went away"), "could not write {}: the device went away; the previous"),
])
def test_a_failed_write_other_than_a_full_disk_is_named_as_it_is(tmp_path, error, said):
    path = str(tmp_path / "last.pt")

    def fail(f):
        raise error

    with pytest.raises(UserError) as raised:
        write_atomic(path, fail)
    assert str(raised.value).startswith(said.format(path))
    assert "disk is full" not in str(raised.value)
    assert os.listdir(tmp_path) == []


def test_auto_resume_is_not_stopped_by_a_temporary_it_cannot_remove(tmp_path):
    save_atomic({"v": torch.tensor(1)}, str(tmp_path / "last.pt"))
    (tmp_path / "last.pt.tmp.99").mkdir()  # os.remove fails on it
    assert resume_path("auto", str(tmp_path)) == str(tmp_path / "last.pt")


def test_a_gpu_run_saves_and_restores_its_own_gpu_generator(monkeypatch):
    device = torch.device("cuda", 1)
    gpu_state = torch.arange(8, dtype=torch.uint8)
    restored = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda d="cuda": gpu_state if d == device else None)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, d="cuda": restored.append((s, d)))
    state = rng_state(device)
    assert set(state) == {"torch", "python", "cuda"} and state["cuda"] is gpu_state
    set_rng_state(state, device)
    assert restored == [(gpu_state, device)]


@pytest.mark.parametrize("as_lists", [False, True], ids=["tuples", "lists"])
def test_restored_generators_draw_what_the_saved_ones_would_have(as_lists):
    state = rng_state(torch.device("cpu"))
    expected = torch.rand(3), random.random()
    if as_lists:  # a file whose Python state went through a format without tuples
        def lists(v):
            return [lists(x) for x in v] if isinstance(v, (list, tuple)) else v
        state = {**state, "python": lists(state["python"])}
    torch.rand(5), random.random()
    set_rng_state(state, torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]


def _tiny_run(seed):
    torch.manual_seed(seed)
    model = FishNet(**TINY_FISHNET, num_classes=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    return model, optimizer


def test_a_saved_run_restores_weights_optimizer_average_progress_and_generators(tmp_path):
    model, optimizer = _tiny_run(0)
    ema = WeightAverage(model, decay=0.9, every_steps=1)
    ema.after_step(model, 1)
    ema.after_step(model, 2)
    progress = Progress(epoch=3, epoch_step=5, step=41, best_top1=55.5, best_epoch=2, epoch_loss_sum=1.5)
    rngs = [rng_state(torch.device("cpu")), {"torch": torch.get_rng_state(), "python": random.getstate()}]
    expected_draw = torch.rand(2)
    state = training_state(model, optimizer, None, progress, {"optim": {"name": "sgd"}}, rngs, "fishnet99", 3,
                           ["a", "b", "c"], world_size=2, ema=ema.state())
    save_atomic(state, str(tmp_path / "last.pt"))

    loaded = load_training_state(str(tmp_path / "last.pt"))
    assert (loaded["arch"], loaded["num_classes"], loaded["classes"], loaded["world_size"]) == (
        "fishnet99", 3, ["a", "b", "c"], 2)
    assert loaded["scaler"] is None and loaded["ema_updates"] == 2 and loaded["config"] == {"optim": {"name": "sgd"}}
    other, other_optimizer = _tiny_run(1)
    other_optimizer.param_groups[0]["lr_scale"] = 0.5
    other_ema = WeightAverage(other, decay=0.9, every_steps=1)
    back = restore_training_state(loaded, other, other_optimizer, None, rank=0, world_size=2, ema=other_ema)
    assert back == progress
    for name, tensor in model.state_dict().items():
        assert torch.equal(other.state_dict()[name], tensor), name
    for name, tensor in ema.model.state_dict().items():
        assert torch.equal(other_ema.model.state_dict()[name], tensor), name
    assert int(other_ema.averaged.n_averaged) == 2
    momenta = [optimizer.state[p]["momentum_buffer"] for p in model.parameters()]
    assert all(torch.equal(other_optimizer.state[p]["momentum_buffer"], m)
               for p, m in zip(other.parameters(), momenta))
    assert other_optimizer.param_groups[0]["lr_scale"] == 0.5  # the configured scale, not the saved one
    assert torch.equal(torch.rand(2), expected_draw)  # rank 0's generators


def test_a_run_without_an_average_saves_none_and_a_resume_keeps_its_own(tmp_path):
    model, optimizer = _tiny_run(0)
    state = training_state(model, optimizer, None, Progress(), {}, [], None, 3, ["a", "b", "c"], world_size=1)
    assert state["model_ema"] is None and state["ema_updates"] == 0 and state["format"] == "fishnet-train/1"
    other, other_optimizer = _tiny_run(1)
    other_ema = WeightAverage(other, decay=0.9, every_steps=1)
    before = {k: v.clone() for k, v in other_ema.model.state_dict().items()}
    restore_training_state(state, other, other_optimizer, None, rank=0, world_size=1, ema=other_ema)
    assert all(torch.equal(other_ema.model.state_dict()[k], v) for k, v in before.items())


def test_the_fp16_scaler_is_saved_and_restored():
    model, optimizer = _tiny_run(0)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    state = training_state(model, optimizer, scaler, Progress(), {}, [], None, 3, [], world_size=1)
    assert state["scaler"]["scale"] == 1024.0
    other, other_optimizer = _tiny_run(1)
    other_scaler = torch.amp.GradScaler("cpu", init_scale=2.0)
    restore_training_state(state, other, other_optimizer, other_scaler, rank=0, world_size=1)
    assert other_scaler.get_scale() == 1024.0


def test_generators_are_restored_only_on_the_same_number_of_processes():
    model, optimizer = _tiny_run(0)
    saved = rng_state(torch.device("cpu"))
    draw = torch.rand(4)
    state = training_state(model, optimizer, None, Progress(), {}, [saved], None, 3, [], world_size=1)
    restore_training_state(state, model, optimizer, None, rank=0, world_size=2)
    assert not torch.equal(torch.rand(4), draw)
    restore_training_state(state, model, optimizer, None, rank=1, world_size=1)  # no entry for rank 1: left alone
    restore_training_state(state, model, optimizer, None, rank=0, world_size=1)
    assert torch.equal(torch.rand(4), draw)


def test_an_optimizer_state_for_other_parameter_groups_is_one_clear_error():
    model, optimizer = _tiny_run(0)
    state = training_state(model, optimizer, None, Progress(), {}, [], None, 3, [], world_size=1)
    params = list(model.parameters())
    split = torch.optim.SGD([{"params": params[:2]}, {"params": params[2:]}], lr=0.1, momentum=0.9)
    with pytest.raises(CheckpointError, match="does not fit this run's parameter groups .*changed since it was "
                                              "saved; set them back, or start from its weights with "
                                              "model.pretrained=<checkpoint> trainer.resume=null"):
        restore_training_state(state, model, split, None, rank=0, world_size=1)


def test_a_file_that_is_not_a_training_checkpoint_is_refused_naming_pretrained(tmp_path):
    save_atomic({"model": {}, "format": "other/1"}, str(tmp_path / "w.pt"))
    with pytest.raises(CheckpointError, match=f"w.pt is not a fishnet-train training checkpoint; .*"
                                              f"model.pretrained={tmp_path / 'w.pt'}"):
        load_training_state(str(tmp_path / "w.pt"))


@pytest.mark.parametrize("config, ok", [
    ({"optim": {"name": "sgd"}}, True), ({"optim": {"name": "adamw"}}, False), ({}, True), ({"optim": "sgd"}, True),
    (None, True),
])
def test_a_resume_with_another_optimizer_is_refused(config, ok):
    state = {"config": config}
    if ok:
        check_same_optimizer(state, "sgd")
    else:
        with pytest.raises(CheckpointError, match="state is adamw.s, but optim.name=sgd: set optim.name=adamw to go "
                                                  "on, or start from its weights with model.pretrained=<checkpoint>"):
            check_same_optimizer(state, "sgd")


def test_epoch_history_copies_last_pt_and_keeps_the_newest(tmp_path):
    for epoch in range(1, 5):
        save_atomic({"epoch": torch.tensor(epoch)}, str(tmp_path / "last.pt"))
        keep_epoch_checkpoint(str(tmp_path), epoch, keep=2)
    assert sorted(os.listdir(tmp_path)) == ["epoch-0003.pt", "epoch-0004.pt", "last.pt"]
    assert torch.load(tmp_path / "epoch-0004.pt", weights_only=True)["epoch"].item() == 4
    save_atomic({"epoch": torch.tensor(9)}, str(tmp_path / "last.pt"))
    keep_epoch_checkpoint(str(tmp_path), 4, keep=2, if_missing=True)  # a resume: the copy is there already
    assert torch.load(tmp_path / "epoch-0004.pt", weights_only=True)["epoch"].item() == 4
    keep_epoch_checkpoint(str(tmp_path), 4, keep=2)  # epoch 4 trained again (a resume from before it): replaced
    assert torch.load(tmp_path / "epoch-0004.pt", weights_only=True)["epoch"].item() == 9
    keep_epoch_checkpoint(str(tmp_path), 5, keep=2, if_missing=True)
    assert sorted(os.listdir(tmp_path)) == ["epoch-0004.pt", "epoch-0005.pt", "last.pt"]


def test_a_new_epoch_starts_its_figures_from_zero():
    progress = Progress(epoch=1, epoch_step=7, step=20, best_top1=3.0, epoch_loss_sum=2.0, epoch_seconds=9.0,
                        epoch_data_wait=1.0)
    progress.start_epoch(2)
    assert progress == Progress(epoch=2, epoch_step=0, step=20, best_top1=3.0)


def test_a_group_without_a_rate_scale_resumes_at_scale_1():
    model, optimizer = _tiny_run(0)
    state = training_state(model, optimizer, None, Progress(), {}, [], None, 3, [], world_size=1)
    other, other_optimizer = _tiny_run(1)
    assert "lr_scale" not in other_optimizer.param_groups[0]
    restore_training_state(state, other, other_optimizer, None, rank=0, world_size=1)
    assert other_optimizer.param_groups[0]["lr_scale"] == 1.0


def test_an_fp16_checkpoint_resumes_on_a_run_without_a_scaler():
    model, optimizer = _tiny_run(0)
    state = training_state(model, optimizer, torch.amp.GradScaler("cpu"), Progress(step=4), {}, [], None, 3, [],
                           world_size=1)
    assert restore_training_state(state, model, optimizer, None, rank=0, world_size=1).step == 4


def test_a_gpu_run_resumes_its_own_gpu_generator(monkeypatch):
    device = torch.device("cuda", 1)
    restored = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, d="cuda": restored.append(d))
    model, optimizer = _tiny_run(0)
    rng = {**rng_state(torch.device("cpu")), "cuda": torch.zeros(8, dtype=torch.uint8)}
    state = training_state(model, optimizer, None, Progress(), {}, [rng], None, 3, [], world_size=1)
    restore_training_state(state, model, optimizer, None, rank=0, world_size=1, device=device)
    assert restored == [device]
