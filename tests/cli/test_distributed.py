"""Several processes on the CPU (gloo): DDP, torchrun, preemption, crashes and exact resume."""
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ..conftest import write_image_folder
from ..helpers import (
    BIN, TINY_TRAIN, assert_ok, assert_same_tensors, metrics, run_cli, saved_state, start_training, wait_for_step,
)
from ..helpers import train_cli as train

pytestmark = pytest.mark.slow
STEPS = ["trainer.epochs=2", "trainer.max_steps_per_epoch=3", "data.batch_size=8"]


def weights(run_dir, parameters_only_of=None):
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    return state["model"] if parameters_only_of is None else {
        k: v for k, v in state["model"].items() if k in parameters_only_of}


# The batch-level draws (MixUp/CutMix, random erasing), the EMA and the repeated-augmentation layout, which
# must not depend on the world size, and an auto-augment policy.
BATCH_LEVEL = ["data.mixup_alpha=0.4", "data.cutmix_alpha=1.0", "data.random_erase=0.5", "model.ema_decay=0.5",
               "data.repeated_aug=2", "data.auto_augment=ra"]


@pytest.mark.parametrize("extra", [[], BATCH_LEVEL], ids=["plain", "mixup_cutmix_erase_ema"])
def test_two_ranks_equal_one_process_accumulating_two_micro_batches(image_folder, tmp_path, extra):
    ddp, accum = tmp_path / "ddp", tmp_path / "accum"
    assert_ok(train(image_folder, ddp, *STEPS, *extra, "trainer.devices=2", "trainer.sync_bn=true"))
    assert (ddp / "train.log").read_text().count("trainer.sync_bn needs GPUs") == 1  # refused on the CPU, once
    # One thread, as each of the two DDP processes has: at the released initialisation a
    # 3-class FishNet's gradients are so ill-conditioned that the summation order of another
    # thread count alone changes them visibly.
    assert_ok(train(image_folder, accum, *STEPS, *extra, "trainer.devices=1", "trainer.accum_steps=2",
                    env={"OMP_NUM_THREADS": "1"}))
    from fishnet_train.models import create_model

    names = {n for n, _ in create_model("fishnet99", num_classes=3).named_parameters()}
    a, b = weights(ddp, names), weights(accum, names)  # BN running stats legitimately differ
    assert set(a) == names
    for key in names:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    if extra:
        a_ema, b_ema = (saved_state(run)["model_ema"] for run in (ddp, accum))
        for key in names:
            torch.testing.assert_close(a_ema[key], b_ema[key], rtol=1e-4, atol=1e-5, msg=key)
    assert [r["epoch"] for r in metrics(ddp)] == [1, 2]
    # Both ranks validated with rank 0's BN statistics, the saved ones: the figures are last.pt's.
    for prefix, use_ema in [("", "false")] + ([("ema_", "true")] if extra else []):
        out = tmp_path / f"eval_{prefix}"
        assert_ok(run_cli("fishnet-eval", f"checkpoint={ddp / 'checkpoints' / 'last.pt'}", f"data.root={image_folder}",
                          f"hydra.run.dir={out}", "data.workers=2", f"model.use_ema={use_ema}"))
        figures, last = json.loads((out / "eval.json").read_text()), metrics(ddp)[-1]
        assert figures["top1"] == pytest.approx(last[f"{prefix}top1"])
        assert figures["loss"] == pytest.approx(last[f"{prefix}val_loss"], rel=1e-5)


def test_distributed_eval_counts_every_image_once_and_equals_single_process(tmp_path):
    data = write_image_folder(tmp_path / "data", val_per_class=3)
    for extra in sorted((data / "val").glob("class_[12]/img_2.jpg")):
        extra.unlink()  # 3 + 2 + 2 = 7 images: does not split evenly over 2 ranks
    assert_ok(train(data, tmp_path / "run", "trainer.epochs=1", "trainer.max_steps_per_epoch=2"))
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    results = {}
    for devices in (1, 2):
        out = tmp_path / f"eval{devices}"
        assert_ok(run_cli("fishnet-eval", f"checkpoint={ckpt}", f"data.root={data}", f"hydra.run.dir={out}",
                          "data.workers=2", "data.batch_size=2", f"trainer.devices={devices}",
                          f"eval.predictions={out}.csv"))
        results[devices] = json.loads((out / "eval.json").read_text())
        assert len((tmp_path / f"eval{devices}.csv").read_text().splitlines()) == 8
    assert results[1]["images"] == results[2]["images"] == 7
    assert [results[1]["processes"], results[2]["processes"]] == [1, 2]  # two ranks shared the 7
    assert results[1]["top1"] == results[2]["top1"] and results[1]["top5"] == results[2]["top5"]
    assert results[1]["loss"] == pytest.approx(results[2]["loss"], rel=1e-4)  # batch sizes differ
    rows = [[line.split(",")[:7] for line in (tmp_path / f"eval{d}.csv").read_text().splitlines()] for d in (1, 2)]
    assert rows[0] == rows[1]  # same files, in order, with the same predicted classes


EXACT = ["trainer.epochs=2", "trainer.max_steps_per_epoch=4", "data.batch_size=6", "trainer.checkpoint_every_steps=1"]


# Every option of the modern toolkit (tests/training/test_recipes.py runs them in process).
MODERN = ["data.auto_augment=ta_wide", "data.random_erase=0.5", "data.mixup_alpha=0.2", "data.cutmix_alpha=1.0",
          "data.repeated_aug=2", "optim=lamb", "optim.lr=0.002", "loss.name=bce", "loss.bce_target_thresh=0.2",
          "model.ema_decay=0.9", "model.zero_init_residual=true", "data.train_crop=48", "data.progressive_min_crop=32",
          "data.progressive_epochs=[0,1]", "trainer.best_by=ema_top1", "data.workers=2"]


@pytest.mark.parametrize("seed, extra", [(0, []), (1, MODERN)], ids=["paper", "modern"])
def test_sigkill_at_a_random_moment_then_resume_is_bit_identical(image_folder, tmp_path, seed, extra):
    reference = tmp_path / "reference"
    assert_ok(train(image_folder, reference, *EXACT, *extra))
    run_dir = tmp_path / "killed"
    rng = random.Random(seed)
    proc = start_training(image_folder, run_dir, *EXACT, *extra)
    wait_for_step(run_dir, rng.choice([1, 2, 5, 6]), proc)  # never at an epoch's end (4 steps each)
    time.sleep(rng.uniform(0.0, 0.4))  # anywhere: mid-step, mid-save
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = saved_state(run_dir)["progress"]
    assert 0 < killed_at["epoch_step"] < 4, killed_at  # mid-epoch
    result = train(image_folder, run_dir, *EXACT, *extra, "trainer.resume=auto")
    assert_ok(result)
    # It went on from last.pt (a fresh start would end bit-identical too, with deterministic=true).
    assert f"at epoch {killed_at['epoch'] + 1}, step {killed_at['epoch_step']} of it" in result.stdout
    assert_same_tensors(weights(reference), weights(run_dir))
    if extra:
        assert_same_tensors(saved_state(reference)["model_ema"], saved_state(run_dir)["model_ema"])


def test_sigusr1_mid_epoch_saves_exits_75_and_resume_finishes(image_folder, tmp_path):
    run_dir = tmp_path / "run"
    overrides = ["trainer.epochs=1", "trainer.max_steps_per_epoch=6", "data.batch_size=4"]
    proc = start_training(image_folder, run_dir, *overrides, "trainer.checkpoint_every_steps=1")
    wait_for_step(run_dir, 2, proc)
    proc.send_signal(signal.SIGUSR1)  # SLURM's usual time-limit warning
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 75, stderr
    assert "preempted" in stderr and "Traceback" not in stderr
    progress = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["progress"]
    assert progress["epoch"] == 0 and 2 <= progress["epoch_step"] < 6
    result = train(image_folder, run_dir, *overrides)
    assert_ok(result)
    assert f"step {progress['epoch_step']} of it" in result.stdout
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["progress"]["step"] == 6


def torchrun(*args, cwd, env=None, timeout=240):
    cmd = [sys.executable, "-m", "torch.distributed.run", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def test_devices_2_and_torchrun_each_train_into_one_run_directory(image_folder, tmp_path):
    for name, command in (
        ("spawned", lambda cwd: run_cli("fishnet-train", *TINY_TRAIN, f"data.root={image_folder}", *STEPS[1:],
                                        "trainer.epochs=1", "trainer.devices=2", cwd=cwd)),
        ("torchrun", lambda cwd: torchrun("--standalone", "--nproc-per-node", "2", str(BIN / "fishnet-train"),
                                          *TINY_TRAIN, f"data.root={image_folder}", *STEPS[1:], "trainer.epochs=1",
                                          cwd=cwd)),
    ):
        cwd = tmp_path / name
        cwd.mkdir()
        result = command(cwd)
        assert_ok(result)
        runs = list((cwd / "outputs" / "train").iterdir())
        assert len(runs) == 1, runs
        assert [r["epoch"] for r in metrics(runs[0])] == [1]
        assert (runs[0] / "checkpoints" / "last.pt").exists()
        assert sorted(p.name for p in cwd.iterdir()) == ["outputs"]


def test_torchrun_restarts_a_crashed_worker_and_the_run_completes(image_folder, tmp_path):
    marker = tmp_path / "crashed-once"
    run_dir = tmp_path / "run"
    script = Path(__file__).with_name("crash_once_train.py")
    result = torchrun("--standalone", "--nproc-per-node", "2", "--max-restarts", "1", str(script), str(marker), "2",
                      *TINY_TRAIN, f"data.root={image_folder}", *STEPS, "trainer.checkpoint_every_steps=1",
                      f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert_ok(result)
    assert marker.exists()
    assert "resumed from" in (run_dir / "train.log").read_text()
    assert [r["epoch"] for r in metrics(run_dir)] == [1, 2]
    shutil.rmtree(run_dir)


def test_resume_on_another_number_of_processes_continues_at_the_same_sample(image_folder, tmp_path):
    run_dir = tmp_path / "run"
    overrides = [*STEPS[1:], "trainer.checkpoint_every_steps=1"]
    proc = start_training(image_folder, run_dir, *overrides, "trainer.epochs=2", "trainer.devices=2")
    wait_for_step(run_dir, 2, proc)
    proc.send_signal(signal.SIGTERM)  # to the launcher, which passes it on to both workers
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 75, stderr[-2000:]
    saved = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert saved["world_size"] == 2 and saved["progress"]["step"] >= 2
    result = train(image_folder, run_dir, *overrides, "trainer.epochs=2", "trainer.devices=1")
    assert_ok(result)
    position = saved["progress"]
    assert f"at epoch {position['epoch'] + 1}, step {position['epoch_step']} of it" in result.stdout
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["progress"]["step"] == 6


def two_nodes(script_args: list[str], cwd: Path, rdzv_id: str | None, timeout: int = 300) -> list:
    """Two torchrun agents on this machine, one worker each, meeting by c10d rendezvous on 127.0.0.1,
    in one working directory (as two nodes sharing a filesystem)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--max-restarts", "1",
           *(["--rdzv-id", rdzv_id] if rdzv_id else []), *script_args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    agents = [subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    results = []
    try:
        for agent in agents:
            out, err = agent.communicate(timeout=timeout)
            results.append(subprocess.CompletedProcess(cmd, agent.returncode, out, err))
    finally:
        for agent in agents:  # a hung agent must not outlive its test
            if agent.poll() is None:
                agent.kill()
                agent.wait()
    return results


def test_two_torchrun_nodes_restart_a_killed_worker_and_end_as_an_uninterrupted_run(image_folder, tmp_path):
    script = str(Path(__file__).with_name("crash_once_train.py"))
    overrides = [*TINY_TRAIN, f"data.root={image_folder}", *STEPS, "trainer.checkpoint_every_steps=1"]
    never = str(tmp_path / "never")
    Path(never).touch()  # the marker exists: nothing is killed
    for name, marker in (("reference", never), ("killed", str(tmp_path / "killed-once"))):
        (tmp_path / name).mkdir()
        for result in two_nodes([script, marker, "2", *overrides], tmp_path / name, rdzv_id="fishnet-two-nodes"):
            assert_ok(result)
    reference, killed = (tmp_path / n / "outputs" / "train" / "torchrun-fishnet-two-nodes"
                         for n in ("reference", "killed"))
    assert Path(tmp_path / "killed-once").exists()
    log = (killed / "train.log").read_text()
    # Killed after step 2, before its checkpoint: both nodes resume from step 1's.
    assert log.count("resumed from") == 1 and "at epoch 1, step 1 of it" in log, log
    assert [r["epoch"] for r in metrics(killed)] == [1, 2]
    assert_same_tensors(weights(reference), weights(killed))


def test_two_torchrun_nodes_without_a_rendezvous_id_refuse_to_start_in_one_line(image_folder, tmp_path):
    results = two_nodes([str(BIN / "fishnet-train"), *TINY_TRAIN, f"data.root={image_folder}", *STEPS], tmp_path,
                        rdzv_id=None)
    assert all(r.returncode != 0 for r in results)
    lines = [line for r in results for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) >= 2 and all("--rdzv-id" in line and "hydra.run.dir" in line for line in lines), lines
    assert not (tmp_path / "outputs").exists()  # no run started, fresh or otherwise


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGUSR2], ids=["usr1", "usr2"])
def test_the_launcher_passes_slurm_and_submitit_warnings_on_and_exits_75(image_folder, tmp_path, sig):
    run_dir = tmp_path / "run"
    proc = start_training(image_folder, run_dir, *STEPS[1:], "trainer.epochs=2", "trainer.devices=2",
                          "trainer.checkpoint_every_steps=1")
    wait_for_step(run_dir, 2, proc)
    proc.send_signal(sig)  # to the launcher alone, which would die of it by default
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 75, stderr[-2000:]
    assert f"preempted by {sig.name}" in stderr
    # At a step, or (on a slow machine the signal may land there) during the epoch's validation.
    stopped = re.findall(r"preempted: stopped by signal (?:at epoch \d+, step \d+|while validating epoch \d+)", stderr)
    assert len(stopped) == 2 and stopped[0] == stopped[1], stderr  # both workers, at the same step
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["progress"]["step"] >= 2


def test_ctrl_c_under_several_devices_exits_130_and_claims_no_save(image_folder, tmp_path):
    run_dir = tmp_path / "run"
    cmd = [str(BIN / "fishnet-train"), *TINY_TRAIN, f"data.root={image_folder}", f"hydra.run.dir={run_dir}",
           *STEPS[1:], "trainer.epochs=2", "trainer.devices=2", "trainer.checkpoint_every_steps=1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wait_for_step(run_dir, 2, proc)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: to every process of the group
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr and "preempted" not in stderr
