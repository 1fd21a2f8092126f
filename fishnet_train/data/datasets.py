"""ImageFolder splits with a policy for undecodable files."""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from ..errors import UserError
from .images import DECODE_ERRORS, load_rgb

MAX_REPLACEMENTS = 50


@dataclass(frozen=True)
class Split:
    root: str
    classes: list[str]
    samples: list[tuple[str, int]]


def split_classes(root: str, name: str) -> tuple[str, list[str], dict[str, int]]:
    """The class folders of ``root/name`` (a listing of folders, not of files): its path, classes
    and class indices; every problem is one UserError naming the path."""
    if not os.path.isdir(root):
        raise UserError(f"data.root {root} is not a directory; point data.root at the folder holding train/ and val/")
    path = os.path.join(root, name)
    if not os.path.isdir(path):
        raise UserError(f"{path} not found: data.root must hold {name}/ with one folder per class")
    try:
        return (path, *find_classes(path))
    except FileNotFoundError as e:
        raise UserError(f"{path}: {str(e).splitlines()[0]}") from None


def find_split(root: str, name: str) -> Split:
    """Index ``root/name`` as an ImageFolder; every problem is one UserError naming the path."""
    path, classes, class_to_idx = split_classes(root, name)
    try:
        samples = make_dataset(path, class_to_idx, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as e:
        raise UserError(f"{path}: {str(e).splitlines()[0]}") from None
    return Split(path, classes, samples)


def find_splits(root: str) -> tuple[Split, Split]:
    train, val = find_split(root, "train"), find_split(root, "val")
    if train.classes != val.classes:
        only_train = sorted(set(train.classes) - set(val.classes))[:3]
        only_val = sorted(set(val.classes) - set(train.classes))[:3]
        raise UserError(
            f"{val.root} has other classes than {train.root} "
            f"({len(val.classes)} vs {len(train.classes)}; only in train: {only_train}, only in val: {only_val})"
        )
    return train, val


class ImageFolderDataset(Dataset):
    """Items are ``(uint8 HWC image, target, lighting alpha, skipped files)``.

    Train items are asked for by ``(index, seed, crop size or None)``: the seed fixes the sample's
    augmentation, so a run resumed mid-epoch sees the very same crops. With ``bad_images="skip"`` an
    undecodable file is replaced by the next decodable one and reported in the item.
    """

    def __init__(self, split: Split, transform: Callable, train: bool, bad_images: str = "skip") -> None:
        self.split, self.transform, self.train, self.bad_images = split, transform, train, bad_images

    def __len__(self) -> int:
        return len(self.split.samples)

    def __getitem__(self, key: int | tuple[int, int] | tuple[int, int, int | None]):
        index, seed, size = (*key, None)[:3] if isinstance(key, tuple) else (key, key, None)
        skipped: list[str] = []
        for attempt in range(MAX_REPLACEMENTS):
            path, target = self.split.samples[(index + attempt) % len(self)]
            try:
                img = load_rgb(path)
            except DECODE_ERRORS as e:
                reason = describe_failure(path, e)
                if self.bad_images == "error":
                    raise UserError(f"cannot decode {reason} (data.bad_images=skip skips such files)") from None
                skipped.append(reason)
                continue
            if self.train:
                image, alpha = self.transform(img, random.Random(seed), size)
            else:
                image, alpha = self.transform(img), torch.zeros(3)
            return image, target, alpha, skipped
        raise UserError(f"{MAX_REPLACEMENTS} files in a row could not be decoded near {path}; run with data.scan=true")


def describe_failure(path: str, error: Exception) -> str:
    detail = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
    return f"{path}: {type(error).__name__}: {detail}"


def collate(items: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    images, targets, alphas, skipped = zip(*items)
    return (
        torch.stack(images),
        torch.tensor(targets, dtype=torch.long),
        torch.stack(alphas),
        [reason for reasons in skipped for reason in reasons],
    )


class _ScanDataset(Dataset):
    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> str | None:
        try:
            load_rgb(self.paths[i])
        except DECODE_ERRORS as e:
            return describe_failure(self.paths[i], e)
        return None


def scan_undecodable(splits: list[Split], workers: int) -> list[str]:
    """Decode every file once (in ``workers`` processes); the reasons for those that fail."""
    paths = [p for split in splits for p, _ in split.samples]
    loader = DataLoader(_ScanDataset(paths), batch_size=64, num_workers=workers, collate_fn=list)
    return [reason for batch in loader for reason in batch if reason is not None]
