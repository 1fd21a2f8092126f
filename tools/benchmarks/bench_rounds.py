"""Side-by-side timing shared by the benchmarks: alternating rounds, median per side."""
from __future__ import annotations

import statistics
import time
from typing import Callable, Hashable, TypeVar

import torch

Key = TypeVar("Key", bound=Hashable)


def median_of_rounds(measures: dict[Key, Callable[[], float]], rounds: int) -> dict[Key, float]:
    """Call every measure once per round, in turn, so all see the same machine; the median
    of each measure's results."""
    results: dict[Key, list[float]] = {name: [] for name in measures}
    for _ in range(rounds):
        for name, measure in measures.items():
            results[name].append(measure())
    return {name: statistics.median(values) for name, values in results.items()}


def images_per_second(fn: Callable[[int], object], n: int) -> float:
    """``fn(0) ... fn(n - 1)`` timed: items per second."""
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a GPU's; nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[], object], steps: int, images: int, device: torch.device) -> float:
    """Images per second over ``steps`` calls, after one untimed call (first-call and allocator warm-up)."""
    step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps * images / (time.perf_counter() - start)


def paired_images_per_second(fns: dict[Key, Callable[[int], object]], n: int, rounds: int) -> dict[Key, float]:
    """Items per second of each ``fn`` over ``0 .. n - 1``, the fns taking turns on every item (in
    alternating order, so that none always finds the file in a warm cache): a load that comes and goes
    on a shared machine slows all alike, and their ratio holds where separate rounds drift."""
    spent = {name: 0.0 for name in fns}
    order = list(fns.items())
    for _ in range(rounds):
        for i in range(n):
            for name, fn in order if i % 2 else reversed(order):
                start = time.perf_counter()
                fn(i)
                spent[name] += time.perf_counter() - start
    return {name: rounds * n / seconds for name, seconds in spent.items()}
