"""The measurements of tools/gpu_check.py: training and inference steps, the loader, host syncs."""
from __future__ import annotations

import copy
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from bench_rounds import median_of_rounds, sync, timed
from PIL import Image

from fishnet_train.config import DataConfig
from fishnet_train.data import TrainSampler, build_train_loader, find_split
from fishnet_train.inference import fuse_for_inference
from fishnet_train.models import create_model
from fishnet_train.processes.start_methods import forking_context
from fishnet_train.training.evaluate import autocast
from fishnet_train.training.guards import agree


def peak_bytes(step: Callable[[], object], device: torch.device) -> int | None:
    """The most memory one call allocates above what was resident before it (the weights and the
    optimiser's state are resident, so this is activations and workspaces)."""
    if device.type != "cuda":
        return None
    step()  # cuDNN's algorithm search, the optimiser's lazily made state: not a step's own memory
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    resident = torch.cuda.memory_allocated(device)
    step()
    sync(device)
    return torch.cuda.max_memory_allocated(device) - resident


def train_step(model, x, y, amp: str, device: torch.device) -> Callable[[], torch.Tensor]:
    """One SGD step per call; the call returns the step's loss (detached, still on the device)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)

    def step() -> torch.Tensor:
        with autocast(device, amp):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()
    return step


def infer_step(model, x, amp: str, device: torch.device) -> Callable[[], object]:
    @torch.inference_mode()
    def step() -> torch.Tensor:
        with autocast(device, amp):
            return model(x)
    return step


def bench_steps(name: str, batches: tuple[int, ...], size: int, steps: int, rounds: int, amp: str,
                device: torch.device) -> dict:
    """Training and inference img/s and step memory: the trainer's defaults for the device (``amp``
    autocast, channels_last; BN folded for inference) against the plain fp32 NCHW eager model,
    alternating rounds in this process."""
    plain, ours = _two_models(name, device)
    sides = {"plain": (plain, torch.contiguous_format, "none"), "ours": (ours, torch.channels_last, amp)}
    results: dict = {}
    for batch in batches:
        x, y = _batch(batch, size, device)
        measures, memory = {}, {}
        for side, (model, fmt, side_amp) in sides.items():
            xs = x.contiguous(memory_format=fmt)
            model.train()
            train = train_step(model, xs, y, side_amp, device)
            memory[f"train_{side}"] = peak_bytes(train, device)
            measures[f"train_{side}"] = (lambda s=train: timed(s, steps, batch, device))
            infer_model = (fuse_for_inference(model) if side == "ours" else copy.deepcopy(model)).eval()
            infer = infer_step(infer_model, xs, side_amp, device)
            memory[f"infer_{side}"] = peak_bytes(infer, device)
            measures[f"infer_{side}"] = (lambda s=infer: timed(s, steps, batch, device))
        speeds = median_of_rounds(measures, rounds)
        results[str(batch)] = {key: {"images_per_sec": round(value, 1), "step_peak_mb": _mb(memory[key])}
                               for key, value in speeds.items()}
    return results


def bench_compiled_step(name: str, batch: int, size: int, steps: int, rounds: int, amp: str,
                        device: torch.device) -> dict:
    """The trainer's step with ``trainer.compile=true`` (the compile itself not timed)."""
    _, ours = _two_models(name, device)
    x, y = _batch(batch, size, device)
    started = time.perf_counter()
    train = train_step(torch.compile(ours), x.contiguous(memory_format=torch.channels_last), y, amp, device)
    train()
    sync(device)
    compile_seconds = time.perf_counter() - started
    speed = median_of_rounds({"compiled": lambda: timed(train, steps, batch, device)}, rounds)["compiled"]
    return {"batch": batch, "images_per_sec": round(speed, 1), "step_peak_mb": _mb(peak_bytes(train, device)),
            "compile_seconds": round(compile_seconds, 1)}


def _two_models(name: str, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same weights twice: NCHW and channels_last."""
    torch.manual_seed(0)
    plain = create_model(name).to(device)
    return plain, copy.deepcopy(plain).to(memory_format=torch.channels_last)


def _batch(batch: int, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(batch, 3, size, size, device=device), torch.randint(0, 1000, (batch,), device=device)


def _mb(value: int | None) -> float | None:
    return None if value is None else round(value / 2**20, 1)


def write_jpegs(root: Path, count: int, processes: int, seed: int = 0) -> float:
    """``count`` JPEGs of ImageNet's sizes (mostly 500 px on the long side, 3:4 to 16:9) with smooth
    content, so their files are of ImageNet's size too (about 110 KB); returns the mean file KB."""
    folder = root / "train" / "n00000000"
    folder.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(processes, mp_context=forking_context()) as pool:
        sizes = list(pool.map(_write_jpeg, [(folder / f"{i:06d}.JPEG", seed + i) for i in range(count)]))
    return round(sum(sizes) / len(sizes) / 1024, 1)


def _write_jpeg(job: tuple[Path, int]) -> int:
    path, seed = job
    rng = np.random.default_rng(seed)
    long_side = 500 if rng.random() < 0.8 else int(rng.integers(300, 1200))
    ratio = float(rng.choice([4 / 3, 3 / 2, 1.0, 16 / 9]))
    w, h = (long_side, int(long_side / ratio)) if rng.random() < 0.75 else (int(long_side / ratio), long_side)
    coarse = rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
    pixels = np.asarray(image, dtype=np.int16) + rng.integers(-12, 13, (h, w, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path.stat().st_size


def bench_loader(root: Path, workers: int, batch: int, passes: int, pin_memory: bool) -> float:
    """The training loader's img/s with ``workers`` workers at the defaults (224 px crops), over
    ``passes`` passes, timed from its first batch (the workers' start is not counted)."""
    split = find_split(str(root), "train")
    data = DataConfig(root=str(root), workers=workers)
    sampler = TrainSampler(len(split), batch)
    loader = build_train_loader(split, data, sampler, batch, pin_memory)
    images, start = 0, None
    for epoch in range(passes):
        sampler.set_epoch(epoch)
        for batch_images, *_ in loader:
            if start is None:
                start = time.perf_counter()
                continue
            images += len(batch_images)
    return images / (time.perf_counter() - start) if start is not None and images else 0.0


def bench_host_sync(name: str, batch: int, size: int, steps: int, rounds: int, amp: str,
                    device: torch.device) -> dict:
    """Steps/s of the trainer's step with and without its per-step agreement (guards.agree: one
    all-reduce and one read of the device, the step's only host sync)."""
    _, model = _two_models(name, device)
    x, y = _batch(batch, size, device)
    step = train_step(model, x.contiguous(memory_format=torch.channels_last), y, amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=False)

    speeds = median_of_rounds({
        "with_agreement": lambda: timed(lambda: agree(step(), None, scaler), steps, 1, device),
        "without": lambda: timed(step, steps, 1, device),
    }, rounds)
    return {key: round(value, 2) for key, value in speeds.items()} | {"batch": batch}
