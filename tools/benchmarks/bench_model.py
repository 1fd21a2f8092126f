"""Model-step and trainer-loop benchmarks (used by tools/benchmarks/benchmark.py)."""
from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from bench_rounds import median_of_rounds, timed

from fishnet_train.inference import fuse_for_inference, inference_compiler
from fishnet_train.models import create_model
from fishnet_train.processes.runtime import keep_freed_memory


def _device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _train_step(model, optimizer, x, y):
    def step():
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


class _Side:
    """One side of the model benchmark, in a process of its own. The trainer's allocator
    setting (``keep_freed_memory``) is process-wide and cannot be undone exactly, and glibc's
    default thresholds adapt to what a process has freed before; so the reference gets a plain
    interpreter that does only what is measured, as a plain inference or training script would."""

    def __init__(self, side: str, name: str, batch: int, size: int) -> None:
        self.device = _device()
        ours = side == "ours"
        if ours and self.device.type == "cpu":
            keep_freed_memory()  # as the trainer and fishnet-eval do on the CPU
        fmt = torch.channels_last if ours else torch.contiguous_format
        torch.manual_seed(0)  # both sides build the same weights and inputs
        self.model = create_model(name).to(self.device, memory_format=fmt)
        self.x = torch.randn(batch, 3, size, size, device=self.device).contiguous(memory_format=fmt)
        self.y = torch.randint(0, 1000, (batch,), device=self.device)
        self.infer_model = fuse_for_inference(self.model) if ours else self.model
        self.compiled = None
        optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.train_step = _train_step(self.model, optimizer, self.x, self.y)

    def logits(self) -> torch.Tensor:
        self.model.eval()
        with torch.no_grad():
            out = self.infer_model(self.x).cpu()
        self.model.train()
        return out

    def infer(self, steps: int) -> float:
        self.model.eval()
        try:
            with torch.inference_mode():
                return timed(lambda: self.infer_model(self.x), steps, len(self.x), self.device)
        finally:
            self.model.train()

    def train(self, steps: int) -> float:
        return timed(self.train_step, steps, len(self.x), self.device)

    def compile(self) -> dict:
        """fishnet-eval's ``trainer.compile=true``: inductor with frozen weights."""
        with inference_compiler(True), torch.no_grad():
            self.compiled = torch.compile(self.infer_model)
            started = time.perf_counter()
            out = self.compiled(self.x).cpu()
        return {"seconds": time.perf_counter() - started, "logits": out}

    def infer_compiled(self, steps: int) -> float:
        with inference_compiler(True), torch.no_grad():
            return timed(lambda: self.compiled(self.x), steps, len(self.x), self.device)


def _serve(conn, side: str, name: str, batch: int, size: int) -> None:
    bench = _Side(side, name, batch, size)
    conn.send("ready")
    while (request := conn.recv()) is not None:
        method, *args = request
        conn.send(getattr(bench, method)(*args))


class _Sides:
    """The two sides' processes; rounds alternate between them, so both see the same machine."""

    def __init__(self, name: str, batch: int, size: int) -> None:
        context = mp.get_context("spawn")
        self.conns, self.procs = {}, []
        for side in ("eager", "ours"):
            parent, child = context.Pipe()
            proc = context.Process(target=_serve, args=(child, side, name, batch, size), daemon=True)
            proc.start()
            self.conns[side], self.procs = parent, self.procs + [proc]
        for side, conn in self.conns.items():
            if conn.recv() != "ready":
                raise RuntimeError(f"the {side} side of the benchmark did not start")

    def __enter__(self) -> _Sides:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def call(self, side: str, method: str, *args):
        self.conns[side].send((method, *args))
        return self.conns[side].recv()

    def alternate(self, methods: dict[str, str], steps: int, rounds: int) -> dict:
        """``methods``: side -> what it times; the median of ``rounds`` alternating rounds."""
        return median_of_rounds({side: functools.partial(self.call, side, method, steps)
                                 for side, method in methods.items()}, rounds)

    def close(self) -> None:
        for conn in self.conns.values():
            with contextlib.suppress(OSError):  # a side that died has closed its end
                conn.send(None)
        for proc in self.procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.terminate()


def bench_model(name: str, batch: int, size: int, steps: int, rounds: int, compiled: bool = False) -> dict:
    with _Sides(name, batch, size) as sides:  # inference only
        eager_logits = sides.call("eager", "logits")
        max_diff = (sides.call("ours", "logits") - eager_logits).abs().max().item()
        infer = sides.alternate({"eager": "infer", "ours": "infer"}, steps, rounds)
        infer_compiled = None
        if compiled:
            result = sides.call("ours", "compile")
            infer_compiled = {**sides.alternate({"eager": "infer", "ours": "infer_compiled"}, steps, rounds),
                              "compile_seconds": result["seconds"],
                              "max_abs_diff": (result["logits"] - eager_logits).abs().max().item()}
    with _Sides(name, batch, size) as sides:  # training only
        train = sides.alternate({"eager": "train", "ours": "train"}, steps, rounds)
    return {"train": train, "infer": infer, "infer_max_abs_diff": max_diff, "infer_compiled": infer_compiled,
            "peak_mb": {"plain": peak_memory_mb(name, batch, size, False),
                        "grad_checkpointing": peak_memory_mb(name, batch, size, True)},
            "device": _device().type, "threads": torch.get_num_threads()}


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
    keep_freed_memory()  # as the trainer does on the CPU
    model = create_model(name, grad_checkpointing=grad_checkpointing).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    model(torch.randn(2, 3, 32, 32)).sum().backward()  # lazy imports and first-use allocations
    model.zero_grad(set_to_none=False)  # gradients exist in both settings before the measurement
    base = _peak_rss_kb()
    model(x).sum().backward()
    print(json.dumps({"peak_mb": (_peak_rss_kb() - base) / 1024}))


def bench_trainer(name: str, batch: int, size: int, steps: int, rounds: int) -> dict:
    """The trainer's ``train_one_epoch`` on in-memory uint8 batches vs the bare step, on the
    same model and optimiser, with the trainer's process settings."""
    from fishnet_train.data import BatchPreprocess
    from fishnet_train.processes.runtime import RuntimeSettings, configure_process
    from fishnet_train.processes.signals import StopRequest
    from fishnet_train.reporting import Reporter
    from fishnet_train.training.checkpoint import Progress
    from fishnet_train.training.loop import LoopOptions, StepParts, train_one_epoch
    from fishnet_train.training.optim import LrSchedule, build_sgd

    device = _device()
    configure_process(RuntimeSettings(seed=0, rank=0, device=device, host_allocator="keep_freed"))
    model = create_model(name, num_classes=2).to(device, memory_format=torch.channels_last)
    optimizer = build_sgd(model, 0.1, 0.9, 1e-4, nesterov=False, decay_norm_and_bias=True)
    preprocess = BatchPreprocess([0.485, 0.456, 0.406], [0.229, 0.224, 0.225], device, channels_last=True)
    parts = StepParts(model, model, optimizer, torch.amp.GradScaler(device.type, enabled=False),
                      LrSchedule(0.1, steps, 1), preprocess, device)
    loop = LoopOptions(steps_per_epoch=steps, epochs=1, global_batch=batch, lighting=True)
    images = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8)
    targets = torch.randint(0, 2, (batch,))
    alphas = torch.randn(batch, 3) * 0.1
    batches = [(images, targets, alphas, [])] * steps

    def bare_steps():
        for _ in range(steps):
            x = preprocess(images, alphas)
            F.cross_entropy(model(x), targets.to(device)).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    with tempfile.TemporaryDirectory() as tmp:
        reporter = Reporter(tmp, active=True)  # the progress bar, as in training
        stop = StopRequest()

        def trainer_epoch():
            train_one_epoch(parts, batches, Progress(), loop, reporter=reporter, stop=stop)

        rates = median_of_rounds({name: functools.partial(timed, fn, 1, steps * batch, device)
                                  for name, fn in (("bare", bare_steps), ("trainer", trainer_epoch))}, rounds)
        reporter.close()
    return {"images_per_sec": rates, "overhead": 1.0 - rates["trainer"] / rates["bare"]}


if __name__ == "__main__":
    _peak_memory_child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), bool(int(sys.argv[4])))
