"""Data-pipeline benchmark: the trainer's worker transforms vs torchvision's reference."""
from __future__ import annotations

import functools
import os

import torch
from torchvision import transforms as T
from torchvision.datasets.folder import pil_loader
from torchvision.transforms import InterpolationMode, v2

from bench_rounds import images_per_second, median_of_rounds
from fishnet_train.data import ImageFolderDataset, SampleIndex, Split, TrainTransform, ValTransform, find_split
from fishnet_train.data.augment import auto_augment
from fishnet_train.data.samplers import sample_seed

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RANDOM_ERASE = 0.1  # experiment/modern.yaml's


def reference_augmented() -> v2.Compose:
    """torchvision's reference training preset (references/classification/presets.py, use_v2, PIL backend)
    with TrivialAugmentWide and random erasing, as the modern recipe runs it."""
    return v2.Compose([
        v2.RandomResizedCrop(224, antialias=True), v2.RandomHorizontalFlip(),
        v2.TrivialAugmentWide(interpolation=InterpolationMode.BILINEAR), v2.PILToTensor(),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD), v2.RandomErasing(RANDOM_ERASE),
        v2.ToPureTensor(),
    ])


def train_transform(decode: str) -> TrainTransform:
    return TrainTransform(224, (0.08, 1.0), (3 / 4, 4 / 3), True, 0.1, decode=decode)


def decode_difference(split: Split) -> dict:
    """Per image, |fast or reduced - exact| of the training crop under the same seed (uint8 levels):
    the mean over images of each image's mean, and the median and largest of each image's maximum."""
    exact = ImageFolderDataset(split, train_transform("exact"), train=True)
    out = {}
    for decode in ("reduced", "fast"):
        other = ImageFolderDataset(split, train_transform(decode), train=True)
        means, maxima = [], []
        for i in range(len(split)):
            key = (i, sample_seed(0, 0, i))
            d = (other[key][0].int() - exact[key][0].int()).abs()
            means.append(d.float().mean().item())
            maxima.append(d.max().item())
        out[decode] = {"mean": round(sum(means) / len(means), 3), "median_max": sorted(maxima)[len(maxima) // 2],
                       "max": max(maxima)}
    return out


def bench_data(root: str, limit: int | None, rounds: int) -> dict:
    """Images/s on one thread; each pipeline reads the same files, rounds alternate."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a loader worker's setting
    try:
        return _bench_data(root, limit, rounds)
    finally:
        torch.set_num_threads(threads)


def _bench_data(root: str, limit: int | None, rounds: int) -> dict:
    splits = [find_split(root, name) for name in ("train", "val") if os.path.isdir(os.path.join(root, name))]
    pairs = [(os.path.join(os.path.basename(s.root), name), t) for s in splits for name, t in s.samples][:limit]
    split = Split(root, splits[0].classes, SampleIndex.from_pairs(pairs))
    paths = split.paths()
    ours_train = ImageFolderDataset(split, train_transform("fast"), train=True)
    ours_exact = ImageFolderDataset(split, train_transform("exact"), train=True)
    ours_val = ImageFolderDataset(split, ValTransform(256, 224), train=False)
    # Ours erases on the device, per batch (data/augment.py): the workers' share is the policy.
    ours_augmented = ImageFolderDataset(
        split, TrainTransform(224, (0.08, 1.0), (3 / 4, 4 / 3), True, 0.0, auto_augment("ta_wide"), "fast"), train=True)
    ref_augmented = reference_augmented()
    ref_train = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])
    ref_val = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)])
    pipelines = {
        ("train", "ours"): lambda i: ours_train[(i, sample_seed(0, 0, i))],
        ("train", "reference"): lambda i: ref_train(pil_loader(paths[i])),
        ("train_exact_decode", "ours"): lambda i: ours_exact[(i, sample_seed(0, 0, i))],
        ("train_ta_wide_erase", "ours"): lambda i: ours_augmented[(i, sample_seed(0, 0, i))],
        ("train_ta_wide_erase", "reference"): lambda i: ref_augmented(pil_loader(paths[i])),
        ("val", "ours"): lambda i: ours_val[i],
        ("val", "reference"): lambda i: ref_val(pil_loader(paths[i])),
        ("decode_only", ""): lambda i: pil_loader(paths[i]),
    }
    timed = {key: functools.partial(images_per_second, fn, len(paths)) for key, fn in pipelines.items()}
    med = median_of_rounds(timed, rounds)
    return {
        "train": {"ours": med[("train", "ours")], "reference": med[("train", "reference")]},
        "train_exact_decode": {"ours": med[("train_exact_decode", "ours")], "reference": med[("train", "reference")]},
        "train_ta_wide_erase": {"ours": med[("train_ta_wide_erase", "ours")],
                                "reference": med[("train_ta_wide_erase", "reference")]},
        "val": {"ours": med[("val", "ours")], "reference": med[("val", "reference")]},
        "decode_only": med[("decode_only", "")],
        "train_pixel_difference": decode_difference(split),
        "images": len(paths),
    }
