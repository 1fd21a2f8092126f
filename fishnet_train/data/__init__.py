"""Data: ImageFolder and shard splits, transforms, samplers and loaders."""
from .datasets import ImageFolderDataset, collate, scan_undecodable
from .folders import find_split, find_splits, split_classes
from .index import SampleIndex, Split
from .loaders import build_loader, build_train_loader, build_val_loader, eval_batch_per_process
from .prefetch import DevicePrefetcher
from .samplers import EvalSampler, TrainSampler
from .shards import read_shard_split, read_shard_splits, stage_shards
from .transforms import BatchPreprocess, TrainTransform, ValTransform

__all__ = [
    "BatchPreprocess", "DevicePrefetcher", "EvalSampler", "ImageFolderDataset", "SampleIndex", "Split",
    "TrainSampler", "TrainTransform", "ValTransform", "build_loader", "build_train_loader", "build_val_loader",
    "collate", "eval_batch_per_process", "find_split", "find_splits", "read_shard_split", "read_shard_splits",
    "scan_undecodable", "split_classes", "stage_shards",
]
