"""The trainer's CUDA paths on a real GPU: mixed precision and its scaler, channels_last with a
compiled step, deterministic mode. Marked ``gpu``: skipped without CUDA; tools/gpu_check.py runs them."""
from __future__ import annotations

import math
import warnings

import pytest
import torch

from fishnet_train.training import train

from ..conftest import write_image_folder
from ..helpers import metrics, saved_state, tiny_options

pytestmark = pytest.mark.gpu

# JPEGs through two loader workers, as users train; on the GPU.
ON_GPU = ("trainer.device=cuda", "data.workers=2")


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("gpu") / "data", classes=3, train_per_class=8, ext="jpg")


def run(data, run_dir, *overrides: str) -> dict:
    return train(tiny_options(data, *ON_GPU, *overrides), str(run_dir))


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_on_the_gpu_with_finite_losses(jpegs, tmp_path, amp):
    run(jpegs, tmp_path / "run", f"trainer.amp={amp}")
    assert all(math.isfinite(m["train_loss"]) and math.isfinite(m["val_loss"]) for m in metrics(tmp_path / "run"))
    state = saved_state(tmp_path / "run")
    assert "cuda" in state["rng"][0]  # the run's device was the GPU (one generator state per rank)
    if amp == "fp16":  # the scaler ran and its state is in the checkpoint
        assert state["scaler"] is not None and state["scaler"]["scale"] > 0
        assert state["scaler"]["_growth_tracker"] > 0 or state["scaler"]["scale"] < 65536.0
    else:
        assert state["scaler"] is None


def test_channels_last_with_a_compiled_step_trains(jpegs, tmp_path):
    import torch._dynamo

    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]  # reset() leaves the counters
    run(jpegs, tmp_path / "run", "trainer.compile=true", "trainer.channels_last=true", "trainer.epochs=1",
        "trainer.max_steps_per_epoch=2", "trainer.amp=bf16")
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > graphs  # the step did run compiled
    assert all(math.isfinite(m["train_loss"]) for m in metrics(tmp_path / "run"))


def test_deterministic_mode_gives_the_same_weights_twice(jpegs, tmp_path):
    with warnings.catch_warnings(record=True) as caught:  # deterministic mode only warns of an op without
        warnings.simplefilter("always")
        for name in ("a", "b"):
            run(jpegs, tmp_path / name, "trainer.deterministic=true", "trainer.amp=bf16", "trainer.epochs=1")
    unsupported = [str(w.message) for w in caught if "deterministic" in str(w.message)]
    a, b = saved_state(tmp_path / "a")["model"], saved_state(tmp_path / "b")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a), unsupported


def test_gpu_and_cpu_evaluation_of_one_checkpoint_agree(jpegs, tmp_path):
    from ..helpers import eval_in_process

    run(jpegs, tmp_path / "run", "trainer.epochs=1")
    checkpoint = tmp_path / "run" / "checkpoints" / "last.pt"
    results = {}
    for device in ("cpu", "cuda"):
        predictions = tmp_path / f"{device}.csv"
        result = eval_in_process(checkpoint, jpegs, tmp_path / device, f"trainer.device={device}",
                                 f"eval.predictions={predictions}")
        results[device] = (result, predictions.read_text().splitlines())
    (cpu, cpu_rows), (gpu, gpu_rows) = results["cpu"], results["cuda"]
    assert (cpu.top1, cpu.top5, cpu.images) == (gpu.top1, gpu.top5, gpu.images)
    assert len(cpu_rows) == len(gpu_rows) == cpu.images + 1
    for a, b in zip(cpu_rows[1:], gpu_rows[1:]):
        a_cells, b_cells = a.split(","), b.split(",")
        assert a_cells[:3] == b_cells[:3]  # path, target, best class
        probs = [(x, y) for x, y in zip(a_cells[-5:], b_cells[-5:]) if x or y]  # empty past the class count
        # TF32 convolutions on the GPU (the trainer's setting there) move probabilities by about 1e-3.
        assert probs and all(abs(float(x) - float(y)) < 5e-3 for x, y in probs)
