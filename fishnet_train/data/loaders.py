"""DataLoaders for training and evaluation."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .datasets import collate


def build_loader(dataset: Dataset, sampler: Sampler, batch_size: int, workers: int, pin_memory: bool) -> DataLoader:
    """Workers stay alive across epochs; the loader's own generator keeps the global RNG
    untouched, so creating an iterator never shifts the training randomness."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        generator=torch.Generator().manual_seed(0),
        drop_last=False,
    )
