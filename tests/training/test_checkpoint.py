import errno
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from fishnet_train.errors import UserError
from fishnet_train.training.checkpoint import copy_atomic, resume_path, save_atomic


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
