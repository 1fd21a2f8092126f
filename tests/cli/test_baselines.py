"""The paper's baselines through the same commands as FishNet: trained, killed with SIGKILL mid-epoch, resumed
bit-identical, evaluated, exported, predicted with and averaged."""
import json
import signal

import pytest
import torch

from ..helpers import (
    assert_ok, assert_same_tensors, assert_user_error, eval_in_process, metrics, run_cli, saved_state, start_training,
    train_cli, wait_for_step,
)

EXACT = ["trainer.epochs=2", "trainer.max_steps_per_epoch=4", "data.batch_size=6", "trainer.checkpoint_every_steps=1"]
SLOW = pytest.mark.slow
BASELINES = ["densenet121", *(pytest.param(name, marks=SLOW) for name in (
    "resnet50", "resnet101", "resnet152", "densenet161", "densenet169", "densenet201"))]


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_a_baseline_resumes_bit_identical_after_sigkill_then_evaluates_and_exports(image_folder, tmp_path, name):
    model = [f"model={name}", "model.drop_rate=0.1", "model.ema_decay=0.9"]
    reference, run_dir = tmp_path / "reference", tmp_path / "killed"
    assert_ok(train_cli(image_folder, reference, *EXACT, *model))
    proc = start_training(image_folder, run_dir, *EXACT, *model)
    wait_for_step(run_dir, 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = saved_state(run_dir)["progress"]
    assert 0 < killed_at["epoch_step"] < 4, killed_at  # mid-epoch
    resumed = train_cli(image_folder, run_dir, *EXACT, *model, "trainer.resume=auto")
    assert_ok(resumed)
    assert f"at epoch {killed_at['epoch'] + 1}, step {killed_at['epoch_step']} of it" in resumed.stdout
    state = saved_state(run_dir)
    assert state["arch"] == name
    assert_same_tensors(saved_state(reference)["model"], state["model"])
    assert_same_tensors(saved_state(reference)["model_ema"], state["model_ema"])

    checkpoint = run_dir / "checkpoints" / "last.pt"
    out = tmp_path / "eval"
    eval_in_process(checkpoint, image_folder, out)  # fishnet-eval's own code, in this process
    figures, last = json.loads((out / "eval.json").read_text()), metrics(run_dir)[-1]
    assert figures["model"] == name and figures["top1"] == pytest.approx(last["top1"])
    assert figures["loss"] == pytest.approx(last["val_loss"], rel=1e-5)
    exported = tmp_path / "weights.safetensors"
    result = run_cli("fishnet-export", f"checkpoint={checkpoint}", f"output={exported}",
                     f"hydra.run.dir={tmp_path / 'x'}")
    assert_ok(result)
    assert "bit-identical weights" in result.stdout + result.stderr


@SLOW
def test_a_resnet_exports_to_onnx_predicts_and_averages(image_folder, tmp_path):
    run_dir = tmp_path / "run"
    assert_ok(train_cli(image_folder, run_dir, *EXACT, "model=resnet50", "trainer.keep_epochs=2"))
    checkpoints = sorted((run_dir / "checkpoints").glob("epoch-*.pt"))
    assert len(checkpoints) == 2
    onnx = tmp_path / "model.onnx"
    result = run_cli("fishnet-export", f"checkpoint={checkpoints[-1]}", "format=onnx", f"output={onnx}",
                     f"hydra.run.dir={tmp_path / 'x'}")
    assert_ok(result)
    assert "batch 2 at 32 px and batch 3 at 32 px" in result.stdout + result.stderr  # ResNet's own size rule
    averaged = tmp_path / "averaged.pt"
    assert_ok(run_cli("fishnet-average", *map(str, checkpoints), "-o", str(averaged)))
    first, second = (saved_state(run_dir, c.name)["model"] for c in checkpoints)
    mean = {k: (a + second[k]) / 2 for k, a in first.items() if a.is_floating_point()}
    written = torch.load(averaged, weights_only=True)["model"]
    for key, value in mean.items():
        torch.testing.assert_close(written[key], value)
    result = run_cli("fishnet-predict", f"checkpoint={averaged}", f"inputs={image_folder / 'val'}",
                     f"predict.output={tmp_path / 'p.csv'}", f"hydra.run.dir={tmp_path / 'y'}")
    assert_ok(result)
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 10  # a header and the 9 val images


def test_fishnets_own_options_are_refused_for_a_baseline_before_any_work(image_folder, tmp_path):
    result = train_cli(image_folder, tmp_path / "run", "model=densenet121", "model.grad_checkpointing=true")
    assert_user_error(result, "model.grad_checkpointing is FishNet's: densenet121 has no checkpointed stages")
    assert not (tmp_path / "run" / "checkpoints").exists()


@SLOW
def test_two_ranks_fine_tune_torchvisions_released_file_then_evaluate_to_its_figures(image_folder, tmp_path):
    import torchvision

    released = tmp_path / "resnet50-0676ba61.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), released)
    run_dir = tmp_path / "run"
    result = train_cli(image_folder, run_dir, *EXACT, "model=resnet50", f"model.pretrained={released}",
                       "optim.backbone_lr_scale=0.1", "trainer.devices=2")
    assert_ok(result)
    assert f"loaded weights from {released} (classifier re-initialised for the new classes)" in result.stdout
    out = tmp_path / "eval"
    assert_ok(run_cli("fishnet-eval", f"checkpoint={run_dir / 'checkpoints' / 'last.pt'}",
                      f"data.root={image_folder}", f"hydra.run.dir={out}", "data.workers=2"))
    assert json.loads((out / "eval.json").read_text())["top1"] == pytest.approx(metrics(run_dir)[-1]["top1"])
