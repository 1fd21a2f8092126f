"""The training loader's images/s with 1 and 2 workers: how the data pipeline scales with cores."""
from __future__ import annotations

import time

from fishnet_train.config import DataConfig
from fishnet_train.data import Split, TrainSampler, build_train_loader

BATCH = 32


def loader_images_per_second(split: Split, workers: int, epochs: int = 3) -> float:
    """Over epochs 2.. of the trainer's own train loader (the first pays for starting the workers)."""
    batch = max(1, min(BATCH, len(split)))  # a tiny test set still makes whole batches
    data = DataConfig(root=split.root, batch_size=batch, workers=workers)
    sampler = TrainSampler(len(split), batch)
    loader = build_train_loader(split, data, sampler, batch, pin_memory=False)
    images, start = 0, 0.0
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        if epoch == 1:
            start = time.perf_counter()
        for batch in loader:
            images += len(batch[0]) if epoch else 0
    rate = images / (time.perf_counter() - start)
    del loader
    return rate


def bench_loader(split: Split, worker_counts: tuple[int, ...] = (1, 2)) -> dict:
    rates = {f"workers_{n}": round(loader_images_per_second(split, n), 1) for n in worker_counts}
    first = rates[f"workers_{worker_counts[0]}"]
    rates.update({f"scaling_{n}": round(rates[f"workers_{n}"] / first, 2) for n in worker_counts[1:]})
    return rates
