"""Data: ImageFolder splits, transforms, samplers and loaders."""
from .datasets import ImageFolderDataset, Split, collate, find_split, find_splits, scan_undecodable, split_classes
from .loaders import build_loader, build_train_loader, build_val_loader, eval_batch_per_process
from .prefetch import DevicePrefetcher
from .samplers import EvalSampler, TrainSampler
from .transforms import BatchPreprocess, TrainTransform, ValTransform

__all__ = [
    "BatchPreprocess", "DevicePrefetcher", "EvalSampler", "ImageFolderDataset", "Split", "TrainSampler",
    "TrainTransform", "ValTransform", "build_loader", "build_train_loader", "build_val_loader", "collate",
    "eval_batch_per_process", "find_split", "find_splits", "scan_undecodable", "split_classes",
]
