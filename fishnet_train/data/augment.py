"""The modern recipes' augmentations, each drawn from a seed of its own.

Per image, in the loader workers: an auto-augment policy (torchvision.transforms.v2 on uint8
images), drawn from the sample's seed like its crop. Per batch, on the device: random erasing
and MixUp/CutMix, drawn from the micro-batch's seed (``batch_seed``), which depends on the run's
seed, the step and the micro-batch's place in the global batch, not on the number of processes.
torchvision's ops draw from torch's global CPU generator: they run with it seeded and then put
back as it was, so they never shift the training randomness.
"""
from __future__ import annotations

from typing import Callable, TypeVar

import torch
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode, v2

from .samplers import sample_seed

AUTO_AUGMENTS = ("ra", "ta_wide", "aa")
ERASE_SCALE, ERASE_RATIO = (0.02, 0.33), (0.3, 3.3)  # torchvision's RandomErasing defaults
T_ = TypeVar("T_")
_BATCH_SALT = 0x5DEECE66D  # batch seeds differ from the sample seeds of the same (step, position)


def auto_augment(name: str | None, magnitude: int = 9) -> v2.Transform | None:
    """``data.auto_augment``'s policy, with bilinear interpolation as torchvision's references use."""
    if name is None:
        return None
    bilinear = InterpolationMode.BILINEAR
    if name == "ra":
        return v2.RandAugment(magnitude=magnitude, interpolation=bilinear)
    if name == "ta_wide":
        return v2.TrivialAugmentWide(interpolation=bilinear)
    if name == "aa":
        return v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET, interpolation=bilinear)
    raise ValueError(f"unknown auto-augment policy {name!r}; choose one of {', '.join(AUTO_AUGMENTS)}")


def seeded(draw: Callable[[], T_], seed: int) -> T_:
    """``draw()`` with torch's global CPU generator seeded with ``seed``, restored afterwards
    (``torch.manual_seed`` would reseed the GPUs' generators too)."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed % 2**63)
        return draw()


def augment_image(policy: v2.Transform, image: torch.Tensor, seed: int) -> torch.Tensor:
    """``policy`` applied to a (H, W, 3) uint8 image, drawn from ``seed``; (H, W, 3) uint8."""
    out: torch.Tensor = seeded(lambda: policy(image.permute(2, 0, 1)), seed)
    return out.permute(1, 2, 0)


def batch_seed(seed: int, step: int, part: int) -> int:
    """The seed of micro-batch ``part`` (its place in the global batch) of global step ``step``."""
    return sample_seed(seed ^ _BATCH_SALT, step, part)


class BatchAugment:
    """Random erasing, then MixUp or CutMix (one of the two per batch when both are on), on a
    normalised float NCHW batch: torchvision's references' ops and defaults (erased boxes are
    zero, the mean colour), drawn from the micro-batch's seed. Targets become class
    probabilities when a batch is mixed."""

    def __init__(self, random_erase: float, mixup_alpha: float, cutmix_alpha: float, num_classes: int) -> None:
        self.random_erase = random_erase
        mixers: list[v2.Transform] = []
        if mixup_alpha > 0:
            mixers.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
        if cutmix_alpha > 0:
            mixers.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        self.mix = v2.RandomChoice(mixers) if len(mixers) > 1 else mixers[0] if mixers else None

    @property
    def active(self) -> bool:
        return self.random_erase > 0 or self.mix is not None

    def __call__(self, x: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        return seeded(lambda: self._draw(x, y), seed)

    def _draw(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.random_erase > 0:
            x = erase(x, erase_boxes(x.shape, self.random_erase))
        if self.mix is not None:
            x, y = self.mix(x, y)
        return x, y


def erase_boxes(shape: torch.Size, p: float) -> list[tuple[int, int, int, int] | None]:
    """Per image: None, or the (top, left, h, w) box torchvision's RandomErasing would erase (its
    ``get_params``, same draws in the same order), from torch's global generator. Where no box fits
    in 10 tries, get_params returns the whole image, to leave as it is."""
    like = torch.empty(shape[1:], device="meta")
    boxes: list[tuple[int, int, int, int] | None] = []
    for _ in range(shape[0]):
        if torch.rand(1).item() >= p:
            boxes.append(None)
            continue
        top, left, h, w, _ = T.RandomErasing.get_params(like, scale=ERASE_SCALE, ratio=ERASE_RATIO, value=[0.0])
        boxes.append((top, left, h, w) if h < shape[-2] else None)
    return boxes


def erase(x: torch.Tensor, boxes: list[tuple[int, int, int, int] | None]) -> torch.Tensor:
    """``x`` with each image's box set to 0, in one masked fill on the device."""
    chosen = [(n, box) for n, box in enumerate(boxes) if box is not None]
    if not chosen:
        return x
    table = torch.zeros(len(boxes), 4, dtype=torch.long)  # top, bottom, left, right; empty where not erased
    for n, (top, left, h, w) in chosen:
        table[n] = torch.tensor([top, top + h, left, left + w])
    table = table.to(x.device, non_blocking=True)
    rows = torch.arange(x.shape[2], device=x.device).view(1, -1, 1)
    cols = torch.arange(x.shape[3], device=x.device).view(1, 1, -1)
    first_row, end_row, first_col, end_col = (table[:, i].view(-1, 1, 1) for i in range(4))
    mask = (rows >= first_row) & (rows < end_row) & (cols >= first_col) & (cols < end_col)
    return x.masked_fill(mask.unsqueeze(1), 0.0)
