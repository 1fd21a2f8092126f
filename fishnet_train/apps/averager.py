"""The averaging app (fishnet-average): one set of weights, the mean of several checkpoints' (Izmailov et al.
2018, "Averaging Weights Leads to Wider Optima"; Wortsman et al. 2022, "Model soups"), that eval, predict,
export and fine-tuning read like any checkpoint."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch
from torch.optim.swa_utils import update_bn
from torch.utils.data import RandomSampler

from ..config import DataConfig
from ..data import BatchPreprocess, ImageFolderDataset
from ..data.folders import find_split
from ..data.loaders import build_loader
from ..data.shards import index_file, read_shard_split
from ..data.transforms import TrainTransform
from ..errors import CheckpointError, UserError
from ..models.weights import WEIGHTS_FORMAT
from ..training.checkpoint import save_atomic
from .trained_model import (
    CHECKPOINT_DATA_KEYS, LoadedCheckpoint, build_trained_model, inference_data, load_checkpoint,
)


@dataclass(frozen=True)
class BatchNormData:
    """Train images to recompute the BatchNorm statistics of the averaged weights on."""
    root: str  # an ImageFolder root or a shard folder, holding train/ (or train-index.npz)
    batches: int = 50
    batch_size: int = 64
    workers: int = 4
    seed: int = 0


def average_checkpoints(paths: list[str], use_ema: bool = False) -> tuple[LoadedCheckpoint, dict[str, torch.Tensor]]:
    """The first checkpoint (whose metadata the average keeps) and the mean of every checkpoint's weights.
    Floating-point tensors, BatchNorm statistics included, are averaged in float64; counters
    (``num_batches_tracked``) are taken from the last file."""
    if len(paths) < 2:
        raise UserError(f"fishnet-average needs two checkpoints or more, got {len(paths)}")
    ckpts = [load_checkpoint(path, None, use_ema) for path in paths]
    first = ckpts[0]
    for ckpt in ckpts[1:]:
        check_compatible(first, ckpt)
    mean = {}
    for key, value in ckpts[-1].state.items():
        if value.is_floating_point():
            mean[key] = torch.stack([ckpt.state[key].double() for ckpt in ckpts]).mean(0).to(value.dtype)
        else:
            mean[key] = value.clone()
    return first, mean


def check_compatible(first: LoadedCheckpoint, other: LoadedCheckpoint) -> None:
    """Weights average only within one architecture and one set of classes."""
    if (first.arch, first.num_classes) != (other.arch, other.num_classes):
        raise CheckpointError(f"{other.path} is a {other.arch} with {other.num_classes} classes, {first.path} a "
                              f"{first.arch} with {first.num_classes}: average checkpoints of one run")
    if first.classes is not None and other.classes is not None and first.classes != other.classes:
        raise CheckpointError(f"{other.path} was trained on other classes than {first.path}: average checkpoints "
                              "of one run")
    shapes = {k: tuple(v.shape) for k, v in first.state.items()}
    if shapes != {k: tuple(v.shape) for k, v in other.state.items()}:
        raise CheckpointError(f"{other.path} and {first.path} hold different weights (keys or shapes): average "
                              "checkpoints of one run")


def recompute_batch_norm(ckpt: LoadedCheckpoint, state: dict[str, torch.Tensor],
                         data: BatchNormData) -> dict[str, torch.Tensor]:
    """The averaged weights with BatchNorm statistics measured anew on ``data.batches`` random train batches
    (the average of the statistics is not the statistics of the average)."""
    split = read_shard_split(data.root, "train") if os.path.isfile(index_file(data.root, "train")) else \
        find_split(data.root, "train")
    # The checkpoint's normalisation and evaluation sizes over the schema's defaults (crop scale and ratio).
    d = inference_data(DataConfig(root=data.root, batch_size=data.batch_size, workers=data.workers), ckpt, set())
    crop = int(ckpt.data.get("train_crop", d.val_crop))
    dataset = ImageFolderDataset(split, TrainTransform(crop, d.crop_scale, d.crop_ratio, True, 0.0, None,
                                                       d.train_decode, d.region_decode), train=True,
                                 bad_images="skip")
    sampler = RandomSampler(dataset, num_samples=data.batches * data.batch_size,
                            generator=torch.Generator().manual_seed(data.seed))
    loader = build_loader(dataset, sampler, data.batch_size, data.workers, pin_memory=False)
    model = build_trained_model(dataclasses.replace(ckpt, state=state))
    preprocess = BatchPreprocess(d.mean, d.std, torch.device("cpu"), True)
    with torch.no_grad():
        update_bn((preprocess(images) for images, *_ in loader), model.to(memory_format=torch.channels_last))
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def average(paths: list[str], output: str, use_ema: bool = False, bn_data: BatchNormData | None = None) -> str:
    """Write the average of ``paths`` to ``output``; returns the architecture."""
    first, state = average_checkpoints(paths, use_ema)
    if bn_data is not None:
        state = recompute_batch_norm(first, state, bn_data)
    save_atomic({
        "format": WEIGHTS_FORMAT, "arch": first.arch, "num_classes": first.num_classes, "classes": first.classes,
        "data": {k: v for k, v in first.data.items() if k in CHECKPOINT_DATA_KEYS},
        "model": state, "averaged": [os.path.abspath(p) for p in paths], "ema": use_ema,
        "batch_norm": "recomputed" if bn_data is not None else "averaged",
    }, output)
    return first.arch
