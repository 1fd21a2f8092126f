"""DataLoaders for training and evaluation, built from the data options."""
from __future__ import annotations

import atexit
import gc
import multiprocessing
import signal

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..config import DataConfig
from ..processes.signals import STOP_SIGNALS
from .augment import auto_augment
from .datasets import ImageFolderDataset, collate
from .index import Split
from .samplers import EvalSampler, TrainSampler
from .transforms import TrainTransform, ValTransform


def freeze_for_fork() -> None:
    """Move every object alive now out of reach of the cyclic garbage collector before workers fork.

    A full collection in a forked worker writes to the header of every object it inherited, so
    the kernel copies each page holding one: about 80 MB per worker, all at once after some
    220,000 items (measured, docs/data.md). Frozen objects are still freed by reference
    counting; only cycles among them are never collected (CPython's advice for pre-fork servers).
    """
    gc.collect()
    gc.freeze()


def leave_stopping_to_the_main_process(worker_id: int) -> None:
    """A loader worker ignores the stop signals. SLURM signals every process of a job (scancel, time
    limits, preemption), as does a signal to the process group: a worker that died of it would fail the
    step the training process is finishing before it saves. Workers still end when the loader shuts
    them down, when their parent dies (torch's watchdog), or at its exit (``end_loader_workers``)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def end_loader_workers() -> None:
    """At exit, kill the loader workers still alive: multiprocessing would end them with SIGTERM, which
    they ignore, and then wait for them forever (a loader frozen out of the collector is never freed).
    torch's SIGCHLD handler goes first: it would report each of these deaths as a worker failure."""
    workers = [child for child in multiprocessing.active_children() if child.daemon]
    if workers:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for worker in workers:
        worker.kill()


class ForkingLoader(DataLoader):
    """A DataLoader that freezes the collector's objects whenever it may fork workers: at each
    iterator, so that everything built before the first one (model, optimizer, checkpoint) is frozen."""

    freeze_collector = True  # tools/bench_index.py turns it off to measure what it saves

    def __iter__(self):
        if self.num_workers > 0:
            # Registered last, so it runs before multiprocessing's own exit handler; once.
            atexit.unregister(end_loader_workers)
            atexit.register(end_loader_workers)
            if self.freeze_collector:
                freeze_for_fork()
        return super().__iter__()


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
        worker_init_fn=leave_stopping_to_the_main_process,
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
