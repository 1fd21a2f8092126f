"""DataLoaders for training and evaluation, built from the data options."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..config import DataConfig
from .augment import auto_augment
from .datasets import ImageFolderDataset, collate
from .index import Split
from .samplers import EvalSampler, TrainSampler
from .transforms import TrainTransform, ValTransform
from .workers import ForkingLoader


def build_loader(dataset: Dataset, sampler: Sampler, batch_size: int, workers: int, pin_memory: bool) -> DataLoader:
    """Workers stay alive across epochs; the loader's own generator keeps the global RNG
    untouched, so creating an iterator never shifts the training randomness."""
    return ForkingLoader(
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
        ignore_stop_signals=True,
    )


def build_train_loader(split: Split, data: DataConfig, sampler: TrainSampler, micro_batch: int,
                       pin_memory: bool) -> DataLoader:
    """Random-resized crops (and flips, lighting draws, the auto-augment policy) from each sample's own seed."""
    transform = TrainTransform(data.train_crop, data.crop_scale, data.crop_ratio, data.hflip, data.lighting,
                               auto_augment(data.auto_augment, data.ra_magnitude), data.train_decode,
                               data.region_decode)
    dataset = ImageFolderDataset(split, transform, train=True, bad_images=data.bad_images)
    return build_loader(dataset, sampler, micro_batch, data.workers, pin_memory)


def eval_batch_per_process(data: DataConfig, world_size: int) -> int:
    """``data.eval_batch_size`` (default ``data.batch_size``) is global, like the training batch."""
    return max(1, (data.eval_batch_size or data.batch_size) // world_size)


def build_val_loader(split: Split, data: DataConfig, rank: int, world_size: int, pin_memory: bool) -> DataLoader:
    """This process's contiguous shard of ``split`` with the evaluation protocol
    (``data.val_resize``, ``data.val_crop``), every image exactly once over all processes."""
    dataset = ImageFolderDataset(split, ValTransform(data.val_resize, data.val_crop), train=False,
                                 bad_images=data.bad_images)
    sampler = EvalSampler(len(dataset), rank, world_size)
    return build_loader(dataset, sampler, eval_batch_per_process(data, world_size), data.workers, pin_memory)
