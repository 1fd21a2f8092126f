"""Samplers that split global batches exactly across processes.

Training: each epoch is a seeded permutation cut into global batches (the incomplete last
one dropped). Process ``rank`` of ``world`` takes the ``rank``-th slice of every global
batch, so the samples of a global batch do not depend on the number of processes, and a
run can resume at any global batch, on any number of processes. Each index travels with
a per-sample seed that fixes its augmentation, and the epoch's crop size (progressive
resizing; None: the configured one). With ``repeats`` R > 1 (repeated augmentation, Hoffer
et al. 2020), each global batch holds B / R samples R times over, each copy with its own seed:
copy k of sample j at position k * B / R + j, so that copies fall to other processes, as in
DeiT's sampler, and a batch mixed with itself shifted by one (MixUp) pairs distinct samples.
An epoch keeps its length and draws about num_samples / R samples.

Evaluation: contiguous shards with no padding, so every image is counted exactly once.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler

_SEED_MIX = 0x9E3779B97F4A7C15  # spreads (seed, epoch, position) over 64 bits


def sample_seed(seed: int, epoch: int, position: int) -> int:
    return (((seed * 1_000_003 + epoch) * 10_000_019 + position) * _SEED_MIX) % (2**63)


class TrainSampler(Sampler):
    def __init__(self, num_samples: int, global_batch: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 repeats: int = 1) -> None:
        if global_batch % world_size or global_batch % repeats:
            raise ValueError(f"global batch {global_batch} does not split over {world_size} processes "
                             f"and {repeats} repeats")
        self.num_samples, self.global_batch = num_samples, global_batch
        self.rank, self.world_size, self.seed, self.repeats = rank, world_size, seed, repeats
        self.epoch, self.start_batch, self.end_batch = 0, 0, self.batches_per_epoch
        self.crop: int | None = None

    @property
    def batches_per_epoch(self) -> int:
        return self.num_samples // self.global_batch

    def set_epoch(self, epoch: int, start_batch: int = 0, end_batch: int | None = None,
                  crop: int | None = None) -> None:
        """Select the epoch's permutation, its global batches ``start_batch:end_batch`` and crop size."""
        end = self.batches_per_epoch if end_batch is None else min(end_batch, self.batches_per_epoch)
        self.epoch, self.start_batch, self.end_batch, self.crop = epoch, start_batch, end, crop

    def __len__(self) -> int:
        return max(0, self.end_batch - self.start_batch) * (self.global_batch // self.world_size)

    def __iter__(self) -> Iterator[tuple[int, int, int | None]]:
        order = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        per_rank, distinct = self.global_batch // self.world_size, self.global_batch // self.repeats
        for batch in range(self.start_batch, self.end_batch):
            first = batch * self.global_batch + self.rank * per_rank
            for position in range(first, first + per_rank):
                sample = batch * distinct + (position - batch * self.global_batch) % distinct
                yield int(order[sample]), sample_seed(self.seed, self.epoch, position), self.crop


class EvalSampler(Sampler):
    def __init__(self, num_samples: int, rank: int = 0, world_size: int = 1) -> None:
        self.begin = num_samples * rank // world_size
        self.end = num_samples * (rank + 1) // world_size

    def __len__(self) -> int:
        return self.end - self.begin

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.begin, self.end))
