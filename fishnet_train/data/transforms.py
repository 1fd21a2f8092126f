"""Per-image transforms (in loader workers, uint8 -> uint8) and per-batch ones (on the device).

Workers only decode, crop and resize; the float conversion, PCA lighting and normalisation
run on whole batches on the training device, where they are nearly free.
"""
from __future__ import annotations

import math
import random
from typing import Sequence

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from .augment import augment_image
from .decoding.images import REDUCTIONS, EncodedImage

# data.train_decode: (DCT-domain reduction allowed, libjpeg-turbo's fast IDCT and upsampling)
TRAIN_DECODES = {"exact": (False, False), "reduced": (True, False), "fast": (True, True)}

# AlexNet's PCA of ImageNet RGB pixels (on the [0, 1] scale), as used by the release.
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = ((0.4009, 0.7192, -0.5675), (-0.8140, -0.0045, -0.5808), (0.4203, -0.6948, -0.5836))


def resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Antialiased bilinear resize of a (3, h, w) uint8 image to (height, width, 3) uint8.

    torch's uint8 kernel for channels-last images matches Pillow's BILINEAR resize up to
    uint8 rounding and runs several times faster.
    """
    x = image.unsqueeze(0).contiguous(memory_format=torch.channels_last)
    out = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return out[0].permute(1, 2, 0)


def random_resized_crop_box(
    width: int, height: int, scale: Sequence[float], ratio: Sequence[float], rng: random.Random
) -> tuple[int, int, int, int]:
    """(left, top, w, h) drawn as torchvision's RandomResizedCrop.get_params draws them (same
    algorithm, same distribution), from ``rng``: each sample's crop is reproducible on its own,
    and Python's generator costs microseconds where a torch one costs tens of them."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = rng.randint(0, height - h)
            left = rng.randint(0, width - w)
            return left, top, w, h
    # Fallback: the whole image, clamped to the ratio range, centred.
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def crop_reduction(w: int, h: int, size: int) -> int:
    """The largest DCT-domain reduction (8, 4, 2, else 1) that keeps a w x h crop at least
    ``size`` px on each side, so that the resize to ``size`` still only shrinks it."""
    return next((r for r in REDUCTIONS if min(w, h) >= r * size), 1)


class TrainTransform:
    """Random resized crop + horizontal flip (+ an auto-augment policy); also draws the sample's
    PCA-lighting alpha. Every draw comes from ``rng``, the sample's own generator, the policy's
    through a seed drawn last (the crop, flip and lighting draws are the same with or without it).

    The crop box is drawn from the size in the file's header, then only what the crop needs is
    decoded (``decode``, one of TRAIN_DECODES): at 1/2, 1/4 or 1/8 scale in the DCT domain when
    the crop is at least that many times the output size, with "fast" also libjpeg-turbo's fast
    IDCT and upsampling. "exact" decodes every pixel, as the evaluation does. ``region``: only the
    crop's rectangle is decoded (data/decoding/jpeg_region.py); the pixels stay the same."""

    def __init__(self, size: int, scale: Sequence[float], ratio: Sequence[float], hflip: bool, lighting: float,
                 augment: v2.Transform | None = None, decode: str = "exact", region: bool = False) -> None:
        self.size, self.scale, self.ratio = size, tuple(scale), tuple(ratio)
        self.hflip, self.lighting, self.augment = hflip, lighting, augment
        self.reduce, self.fast = TRAIN_DECODES[decode]
        self.region = region

    def __call__(self, image: EncodedImage | torch.Tensor, rng: random.Random,
                 size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """An image (or a (3, H, W) uint8 tensor) -> (size, size, 3) uint8 and a (3,) lighting alpha;
        ``size`` overrides the configured crop size (progressive resizing)."""
        if isinstance(image, torch.Tensor):
            image = EncodedImage(b"", image.shape[2], image.shape[1], image)
        size = size or self.size
        box = random_resized_crop_box(image.width, image.height, self.scale, self.ratio, rng)
        reduction = crop_reduction(box[2], box[3], size) if self.reduce else 1
        out = resize(image.crop(box, reduction, self.fast, self.region), size, size)
        if self.hflip and rng.random() < 0.5:
            out = out.flip(1)
        alpha = torch.tensor([rng.gauss(0.0, self.lighting) for _ in range(3)]) if self.lighting > 0 else torch.zeros(3)
        if self.augment is not None:
            out = augment_image(self.augment, out, rng.getrandbits(63))
        return out, alpha


def resize_shorter_size(width: int, height: int, size: int) -> tuple[int, int]:
    """torchvision's Resize(size) output (width, height) for a PIL image."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


class ValTransform:
    """Resize the shorter side, centre crop: torchvision's Resize + CenterCrop up to uint8 rounding."""

    def __init__(self, resize: int, crop: int) -> None:
        self.resize, self.crop = resize, crop

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) uint8 -> (crop, crop, 3) uint8."""
        new_w, new_h = resize_shorter_size(image.shape[2], image.shape[1], self.resize)
        out = resize(image, new_h, new_w)
        crop_w, crop_h = min(self.crop, new_w), min(self.crop, new_h)
        top = int(round((new_h - crop_h) / 2.0))
        left = int(round((new_w - crop_w) / 2.0))
        return out[top:top + crop_h, left:left + crop_w]


class BatchPreprocess:
    """uint8 NHWC batch -> normalised float NCHW on the device, with optional PCA lighting."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device, channels_last: bool) -> None:
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255.0
        self.inv_std = 1.0 / (torch.tensor(std, device=device).view(1, 3, 1, 1) * 255.0)
        self.eigvec = torch.tensor(PCA_EIGVEC, device=device)
        self.eigval = torch.tensor(PCA_EIGVAL, device=device)
        self.device, self.channels_last = device, channels_last

    def __call__(self, images: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
        if not self.channels_last:
            x = x.contiguous()
        shift = self.mean
        if alpha is not None:
            # Lighting adds one RGB offset per image (on the [0,1] scale): fold it into the mean.
            rgb = (self.eigvec * (alpha.to(self.device, non_blocking=True) * self.eigval).unsqueeze(1)).sum(2)
            shift = shift - rgb.view(-1, 3, 1, 1) * 255.0
        return (x - shift) * self.inv_std


def progressive_crop(epoch: int, low: int | None, high: int, ramp: Sequence[int]) -> int | None:
    """Progressive resizing's crop size at (0-based) ``epoch``: ``low`` until epoch ``ramp[0]``, ``high``
    from ``ramp[1]`` on, and between them the linear ramp rounded to a multiple of 32 px, as FFCV's
    ImageNet recipe rounds it (kept within [low, high]). None when off (``low`` None)."""
    if low is None:
        return None
    start, end = ramp
    if epoch <= start:
        return low
    if epoch >= end:
        return high
    size = int(round((low + (high - low) * (epoch - start) / (end - start)) / 32)) * 32
    return min(high, max(low, size))
