"""Building the pieces of a run from its config: model, data, optimisation, runtime flags.

This is where the config stops: everything built here takes plain typed arguments.
"""
from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader

from ..data import (
    BatchPreprocess, EvalSampler, ImageFolderDataset, Split, TrainSampler, TrainTransform, ValTransform,
    build_loader, find_splits, scan_undecodable,
)
from ..errors import UserError
from ..models import create_model, list_models, load_weights, read_checkpoint
from ..models.weights import CLASSIFIER_PREFIX, extract_state_dict
from .distributed import DistInfo, broadcast_object
from .host_memory import keep_freed_memory

log = logging.getLogger("fishnet_train")


def configure_runtime(seed: int, rank: int, deterministic: bool, device: torch.device) -> None:
    """Per-rank seeds, the determinism / speed flags of the backends, and on the CPU an
    allocator that reuses each step's activation memory (see ``host_memory``)."""
    random.seed(seed + rank)
    torch.manual_seed(seed + rank)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if device.type == "cpu":
        keep_freed_memory()
    if device.type == "cpu" and local_processes > 1:
        # Processes sharing the CPU must share its cores too, or their threads fight.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_processes))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def effective_amp(amp: str, device: torch.device) -> str:
    if amp == "fp16" and device.type != "cuda":
        log.warning("trainer.amp=fp16 needs a GPU; training in fp32 on %s", device.type)
        return "none"
    return amp


def split_batch(global_batch: int, world_size: int, accum_steps: int) -> int:
    """Per-process micro-batch; the global batch must split exactly."""
    parts = world_size * accum_steps
    if global_batch % parts:
        raise UserError(
            f"data.batch_size={global_batch} does not split over {world_size} processes x "
            f"{accum_steps} accumulation steps; use a multiple of {parts}"
        )
    return global_batch // parts


def resolve_num_classes(configured: int | None, classes: list[str], root: str) -> int:
    if configured is None:
        return len(classes)
    if configured != len(classes):
        raise UserError(
            f"model.num_classes={configured} but {root} has {len(classes)} classes; "
            f"set model.num_classes={len(classes)} (or null to take it from the data)"
        )
    return configured


def build_model(name: str, num_classes: int, drop_rate: float, grad_checkpointing: bool) -> nn.Module:
    if name not in list_models():
        raise UserError(f"unknown model {name!r}; choose one of {', '.join(list_models())} (model=...)")
    return create_model(name, num_classes=num_classes, drop_rate=drop_rate, grad_checkpointing=grad_checkpointing)


def load_pretrained(model: nn.Module, path: str) -> None:
    """Weights only, ours or released; a classifier of another class count is re-initialised."""
    state = extract_state_dict(read_checkpoint(path))
    fc = state.get(CLASSIFIER_PREFIX + "weight")
    skip = fc is not None and fc.shape != model.state_dict()[CLASSIFIER_PREFIX + "weight"].shape
    load_weights(model, state, skip_classifier=skip)
    log.info("loaded weights from %s%s", path, " (classifier re-initialised for the new classes)" if skip else "")


@dataclass
class DataPipeline:
    train_loader: DataLoader
    val_loader: DataLoader
    train_sampler: TrainSampler
    classes: list[str]
    preprocess: BatchPreprocess


def check_data(data: DictConfig, is_main: bool) -> tuple[Split, Split]:
    """Index both splits; with ``data.scan``, rank 0 decodes every file once beforehand."""
    train_split, val_split = find_splits(data.root)
    if data.scan:
        bad = broadcast_object(scan_undecodable([train_split, val_split], data.workers) if is_main else None)
        for reason in bad:
            log.warning("undecodable: %s", reason)
        if bad and data.bad_images == "error":
            raise UserError(f"{len(bad)} undecodable files (first: {bad[0]}); remove them or use data.bad_images=skip")
        log.info("data scan: %d undecodable files", len(bad))
    if len(train_split.samples) < data.batch_size:
        raise UserError(
            f"{train_split.root} has {len(train_split.samples)} images, fewer than one batch "
            f"(data.batch_size={data.batch_size}); lower data.batch_size"
        )
    return train_split, val_split


def build_data(
    data: DictConfig, splits: tuple[Split, Split], info: DistInfo, accum_steps: int, seed: int, channels_last: bool
) -> DataPipeline:
    train_split, val_split = splits
    micro = split_batch(data.batch_size, info.world_size, accum_steps)
    eval_batch = max(1, (data.eval_batch_size or data.batch_size) // info.world_size)
    pin = info.device.type == "cuda"
    train_tf = TrainTransform(data.train_crop, data.crop_scale, data.crop_ratio, data.hflip, data.lighting)
    train_set = ImageFolderDataset(train_split, train_tf, train=True, bad_images=data.bad_images)
    val_set = ImageFolderDataset(val_split, ValTransform(data.val_resize, data.val_crop), train=False, bad_images=data.bad_images)
    sampler = TrainSampler(len(train_set), data.batch_size, info.rank, info.world_size, seed)
    val_sampler = EvalSampler(len(val_set), info.rank, info.world_size)
    return DataPipeline(
        train_loader=build_loader(train_set, sampler, micro, data.workers, pin),
        val_loader=build_loader(val_set, val_sampler, eval_batch, data.workers, pin),
        train_sampler=sampler,
        classes=train_split.classes,
        preprocess=BatchPreprocess(data.mean, data.std, info.device, channels_last),
    )
