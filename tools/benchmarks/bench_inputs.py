"""What the data benchmarks read: the user's ImageNet root (class folders, or shards: their first samples copied
out into class folders, as the pipelines compared read files), or, with no root, synthetic JPEGs written here
with ImageNet's sizes (figures from them are labelled synthetic)."""
from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from fishnet_train.data.shards import read_shard_splits

# Measured on the 1,000 ImageNet train JPEGs of ../shared/data/imagenet-samples: 70 % are 500 px on the long
# side (5th percentile 250, 95th 750, 99th 1,095), 74 % landscape, shapes 4:3 (40 %) and 3:2 (28 %) first;
# 0.54 bytes per pixel (a mean of 110 KB). The content is tuned to the same bytes per pixel at quality 90.
RATIOS, RATIO_P = (4 / 3, 3 / 2, 1.0), (0.40, 0.28, 0.05)
NOISE, QUALITY = 18.0, 90


def imagenet_size(rng: np.random.Generator) -> tuple[int, int]:
    draw = rng.random()
    long = 500 if draw < 0.70 else int(rng.integers(150, 500)) if draw < 0.88 else int(rng.integers(501, 1200))
    pick = rng.random()
    ratio = next((r for r, edge in zip(RATIOS, np.cumsum(RATIO_P)) if pick < edge), float(rng.uniform(1.1, 1.9)))
    short = max(16, round(long / ratio))
    return (long, short) if rng.random() < 0.74 else (short, long)


def photo_like(width: int, height: int, rng: np.random.Generator) -> bytes:
    """Smooth shapes, texture and sensor noise: a JPEG that compresses about as ImageNet's photos do."""
    coarse = rng.integers(0, 256, (max(2, height // 40), max(2, width // 40), 3), dtype=np.uint8)
    texture = rng.integers(0, 256, (max(2, height // 6), max(2, width // 6), 3), dtype=np.uint8)
    pixels = 0.7 * np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.float32)
    pixels += 0.3 * np.asarray(Image.fromarray(texture).resize((width, height), Image.BILINEAR), np.float32)
    pixels += rng.normal(0.0, NOISE, (height, width, 3))
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def write_synthetic(root: str, count: int, classes: int = 10, seed: int = 0) -> str:
    """``root/train/<class>/*.JPEG``: ``count`` synthetic photos of ImageNet's sizes."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        folder = os.path.join(root, "train", f"n{i % classes:08d}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"synthetic_{i:06d}.JPEG"), "wb") as f:
            f.write(photo_like(*imagenet_size(rng), rng))
    return root


def is_shard_root(root: str) -> bool:
    return any(os.path.isfile(os.path.join(root, f"{split}-index.npz")) for split in ("train", "val"))


def copy_out_of_shards(root: str, folder: str, limit: int) -> int:
    """The first ``limit`` train samples of the shards under ``root`` as class folders under ``folder``; how
    many there were."""
    train = read_shard_splits(root)[0]
    count = min(limit, len(train))
    for i in range(count):
        path = os.path.join(folder, "train", train.samples.name(i))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(train.read(i))
    return count
