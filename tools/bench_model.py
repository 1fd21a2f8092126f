"""Model-step and trainer-loop benchmarks (used by tools/benchmark.py)."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from fishnet_train.models import create_model
from fishnet_train.models.fuse import fuse_for_inference


def _device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, steps: int, images: int, device: torch.device) -> float:
    fn()  # not timed: first-call and allocator warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return steps * images / (time.perf_counter() - start)


def _train_step(model, optimizer, x, y):
    def step():
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def _alternate(fns: dict, steps: int, images: int, rounds: int, device: torch.device) -> dict:
    rates = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            rates[name].append(_timed(fn, steps, images, device))
    return {name: statistics.median(r) for name, r in rates.items()}


def bench_compiled_inference(fused, x_cl, eager, x, steps, batch, rounds, device) -> dict:
    """fishnet-eval's ``trainer.compile=true`` path: inductor with frozen weights, vs eager."""
    import torch._inductor.config as inductor_config

    with inductor_config.patch(freezing=True), torch.no_grad():
        compiled = torch.compile(fused)
        started = time.perf_counter()
        max_diff = (compiled(x_cl) - eager(x)).abs().max().item()
        compile_seconds = time.perf_counter() - started

        def infer_eager():
            eager(x)

        def infer_compiled():
            compiled(x_cl)

        rates = _alternate({"eager": infer_eager, "ours": infer_compiled}, steps, batch, rounds, device)
    return {**rates, "compile_seconds": compile_seconds, "max_abs_diff": max_diff}


def bench_model(name: str, batch: int, size: int, steps: int, rounds: int, compiled: bool = False) -> dict:
    device = _device()
    torch.manual_seed(0)
    eager = create_model(name).to(device)
    ours = create_model(name).to(device, memory_format=torch.channels_last)
    ours.load_state_dict(eager.state_dict())
    x = torch.randn(batch, 3, size, size, device=device)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)

    eager.eval()
    fused = fuse_for_inference(ours)
    with torch.no_grad():
        max_diff = (fused(x_cl) - eager(x)).abs().max().item()

    def infer_eager():
        with torch.no_grad():
            eager(x)

    def infer_ours():
        with torch.inference_mode():
            fused(x_cl)

    infer = _alternate({"eager": infer_eager, "ours": infer_ours}, steps, batch, rounds, device)
    infer_compiled = bench_compiled_inference(fused, x_cl, eager, x, steps, batch, rounds, device) if compiled else None
    eager.train()
    ours.train()
    opt_eager = torch.optim.SGD(eager.parameters(), lr=0.01, momentum=0.9)
    opt_ours = torch.optim.SGD(ours.parameters(), lr=0.01, momentum=0.9)
    train = _alternate({"eager": _train_step(eager, opt_eager, x, y), "ours": _train_step(ours, opt_ours, x_cl, y)},
                       steps, batch, rounds, device)
    return {"train": train, "infer": infer, "infer_max_abs_diff": max_diff, "infer_compiled": infer_compiled,
            "peak_mb": {"plain": peak_memory_mb(name, batch, size, False),
                        "grad_checkpointing": peak_memory_mb(name, batch, size, True)},
            "device": device.type, "threads": torch.get_num_threads()}


def peak_memory_mb(name: str, batch: int, size: int, grad_checkpointing: bool) -> float:
    """Memory a training step adds on top of the model and its input (a fresh process on the CPU)."""
    if torch.cuda.is_available():
        model = create_model(name, grad_checkpointing=grad_checkpointing).cuda().to(memory_format=torch.channels_last)
        x = torch.randn(batch, 3, size, size, device="cuda").contiguous(memory_format=torch.channels_last)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        model(x).float().sum().backward()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    out = subprocess.run([sys.executable, __file__, name, str(batch), str(size), str(int(grad_checkpointing))],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["peak_mb"]


def _peak_rss_kb() -> int:
    # VmHWM belongs to this process image; ru_maxrss would carry the parent's peak across exec.
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))


def _peak_memory_child(name: str, batch: int, size: int, grad_checkpointing: bool) -> None:
    model = create_model(name, grad_checkpointing=grad_checkpointing).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    model(torch.randn(2, 3, 32, 32)).sum().backward()  # lazy imports and first-use allocations
    model.zero_grad(set_to_none=False)  # gradients exist in both settings before the measurement
    base = _peak_rss_kb()
    model(x).sum().backward()
    print(json.dumps({"peak_mb": (_peak_rss_kb() - base) / 1024}))


def bench_trainer(name: str, batch: int, size: int, steps: int, rounds: int) -> dict:
    """The trainer's ``train_one_epoch`` on in-memory uint8 batches vs the bare step."""
    from hydra import compose, initialize_config_module
    from PIL import Image

    from fishnet_train.config import register_configs
    from fishnet_train.engine.distributed import DistInfo
    from fishnet_train.engine.reporting import Reporter
    from fishnet_train.engine.signals import StopRequest
    from fishnet_train.engine.trainer import prepare, train_one_epoch

    device = _device()
    register_configs()
    with tempfile.TemporaryDirectory() as tmp:
        for split in ("train", "val"):
            for c in range(2):
                folder = Path(tmp, "data", split, f"c{c}")
                folder.mkdir(parents=True)
                for i in range(batch):
                    Image.new("RGB", (8, 8)).save(folder / f"{i}.png")
        with initialize_config_module("fishnet_train.conf", version_base="1.3"):
            cfg = compose("train", overrides=[
                f"model.name={name}", "model.num_classes=null", f"data.root={tmp}/data", f"data.batch_size={batch}",
                "data.workers=0", f"data.train_crop={size}", "trainer.resume=null", f"trainer.device={device.type}"])
        reporter = Reporter(tmp, active=True)
        run = prepare(cfg, tmp, DistInfo(device=device), reporter, StopRequest())
        images = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8)
        targets = torch.randint(0, 2, (batch,))
        alphas = torch.randn(batch, 3) * 0.1
        run.data.train_loader = [(images, targets, alphas, [])] * steps
        run.steps_per_epoch = steps

        def trainer_epoch():
            run.progress.epoch_step = 0
            train_one_epoch(run, 0)

        def bare_steps():
            for _ in range(steps):
                x = run.data.preprocess(images, alphas)
                F.cross_entropy(run.model(x), targets.to(device)).backward()
                run.optimizer.step()
                run.optimizer.zero_grad(set_to_none=True)

        rates = _alternate({"bare": bare_steps, "trainer": trainer_epoch}, 1, steps * batch, rounds, device)
        reporter.close()
    return {"images_per_sec": rates, "overhead": 1.0 - rates["trainer"] / rates["bare"]}


if __name__ == "__main__":
    _peak_memory_child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), bool(int(sys.argv[4])))
