"""Data-pipeline benchmark: the trainer's worker transforms vs torchvision's reference and DALI's CPU
pipeline, the training crop's region decode vs the whole-image decode (on the files as they are, and on
copies with a restart marker after every MCU, tools/add_restart_markers.py), and the loader with 1 and 2
workers."""
from __future__ import annotations

import functools
import os
import random
import tempfile

import torch
from torchvision import transforms as T
from torchvision.datasets.folder import pil_loader
from torchvision.transforms import InterpolationMode, v2

from bench_dali import dali_train_pipeline
from bench_loader import bench_loader
from bench_rounds import images_per_second, median_of_rounds, paired_images_per_second
from fishnet_train.data import ImageFolderDataset, SampleIndex, Split, TrainTransform, ValTransform, find_split
from fishnet_train.data.augment import auto_augment
from fishnet_train.data.decoding.images import open_image, read_file
from fishnet_train.data.decoding.jpeg_region import region_decoder_notice
from fishnet_train.data.decoding.restart_markers import rewrite_tree
from fishnet_train.data.samplers import sample_seed
from fishnet_train.data.transforms import crop_reduction, random_resized_crop_box

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


def train_transform(decode: str, region: bool = True) -> TrainTransform:
    return TrainTransform(224, (0.08, 1.0), (3 / 4, 4 / 3), True, 0.1, decode=decode, region=region)


def crop_decoder(paths: list[str], region: bool):
    """The training crop's pixels alone (file read, header, decode at the crop's reduction, fast IDCT)."""
    def decode(i: int) -> object:
        image = open_image(read_file(paths[i]))
        box = random_resized_crop_box(image.width, image.height, (0.08, 1.0), (3 / 4, 4 / 3), random.Random(i))
        return image.crop(box, crop_reduction(box[2], box[3], 224), True, region)
    return decode


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
    """Images/s on one thread and one core (DALI's helper threads too); each pipeline reads the same files,
    rounds alternate. Then the loader with 1 and 2 workers on all the cores this process may use."""
    threads, cores = torch.get_num_threads(), os.sched_getaffinity(0)
    torch.set_num_threads(1)  # a loader worker's setting
    os.sched_setaffinity(0, {max(cores)})
    try:
        with tempfile.TemporaryDirectory() as marked:
            results = _bench_data(root, limit, rounds, marked)
    finally:
        torch.set_num_threads(threads)
        os.sched_setaffinity(0, cores)
    split = results.pop("split")
    results["loader_images_per_second"] = {"cores": len(cores), **bench_loader(split)}
    return results


def with_restart_markers(split: Split, folder: str) -> Split:
    """The same samples, rewritten into ``folder`` with a restart marker after every MCU."""
    for name in {os.path.dirname(os.path.dirname(name)) for name, _ in split.samples}:
        rewrite_tree(os.path.join(split.root, name), os.path.join(folder, name), workers=1)
    return Split(folder, split.classes, split.samples)


def _bench_data(root: str, limit: int | None, rounds: int, marked_folder: str) -> dict:
    splits = [find_split(root, name) for name in ("train", "val") if os.path.isdir(os.path.join(root, name))]
    pairs = [(os.path.join(os.path.basename(s.root), name), t) for s in splits for name, t in s.samples][:limit]
    split = Split(root, splits[0].classes, SampleIndex.from_pairs(pairs))
    paths = split.paths()
    marked = with_restart_markers(split, marked_folder)
    ours_marked = ImageFolderDataset(marked, train_transform("fast"), train=True)
    ours_train = ImageFolderDataset(split, train_transform("fast"), train=True)
    ours_whole = ImageFolderDataset(split, train_transform("fast", region=False), train=True)
    ours_exact = ImageFolderDataset(split, train_transform("exact"), train=True)
    ours_val = ImageFolderDataset(split, ValTransform(256, 224), train=False)
    # Ours erases on the device, per batch (data/augment.py): the workers' share is the policy.
    ours_augmented = ImageFolderDataset(
        split, TrainTransform(224, (0.08, 1.0), (3 / 4, 4 / 3), True, 0.0, auto_augment("ta_wide"), "fast", True),
        train=True)
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
    timed[("train", "marked")] = functools.partial(
        images_per_second, lambda i: ours_marked[(i, sample_seed(0, 0, i))], len(paths))
    timed[("val", "marked")] = functools.partial(
        images_per_second, ImageFolderDataset(marked, ValTransform(256, 224), train=False).__getitem__, len(paths))
    dali, dali_marked = dali_train_pipeline(paths), dali_train_pipeline(marked.paths())
    if not isinstance(dali, str) and not isinstance(dali_marked, str):
        timed[("dali_cpu", "")], timed[("dali_cpu", "marked")] = dali, dali_marked
    med = median_of_rounds(timed, rounds)
    train = med[("train", "ours")]
    # Region against whole-image decoding: image by image in turns, the ratio this change is about.
    paired = paired_images_per_second({
        "train_region": lambda i: ours_train[(i, sample_seed(0, 0, i))],
        "train_whole": lambda i: ours_whole[(i, sample_seed(0, 0, i))],
        "train_marked": lambda i: ours_marked[(i, sample_seed(0, 0, i))],
        "crop_region": crop_decoder(paths, region=True),
        "crop_whole": crop_decoder(paths, region=False),
        "crop_marked": crop_decoder(marked.paths(), region=True),
    }, len(paths), rounds)
    # DALI at its best: on the files as they are or on the marked copies, whichever it decodes faster.
    dali_best = max(med[("dali_cpu", "")], med[("dali_cpu", "marked")]) if ("dali_cpu", "") in med else None
    return {
        "train": {"ours": train, "reference": med[("train", "reference")]},
        "train_region_vs_whole_decode": {"ours": paired["train_region"], "reference": paired["train_whole"]},
        "train_vs_dali_cpu": {"ours": train, "reference": med[("dali_cpu", "")]} if dali_best else dali,
        "crop_decode_region_vs_whole": {"ours": paired["crop_region"], "reference": paired["crop_whole"]},
        "train_marked_vs_whole_decode": {"ours": paired["train_marked"], "reference": paired["train_whole"]},
        "train_marked_vs_dali_cpu_best": {"ours": med[("train", "marked")], "reference": dali_best}
        if dali_best else dali,
        "dali_cpu_marked_vs_as_is": {"ours": med[("dali_cpu", "marked")], "reference": med[("dali_cpu", "")]}
        if dali_best else dali,
        "crop_decode_marked_vs_whole": {"ours": paired["crop_marked"], "reference": paired["crop_whole"]},
        "val_marked_vs_as_is": {"ours": med[("val", "marked")], "reference": med[("val", "ours")]},
        "region_decoder": region_decoder_notice() or "built",
        "train_exact_decode": {"ours": med[("train_exact_decode", "ours")], "reference": med[("train", "reference")]},
        "train_ta_wide_erase": {"ours": med[("train_ta_wide_erase", "ours")],
                                "reference": med[("train_ta_wide_erase", "reference")]},
        "val": {"ours": med[("val", "ours")], "reference": med[("val", "reference")]},
        "decode_only": med[("decode_only", "")],
        "train_pixel_difference": decode_difference(split),
        "images": len(paths),
        "split": split,
    }
