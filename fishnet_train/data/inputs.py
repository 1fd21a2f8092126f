"""Images named on the command line (fishnet-predict): a file, a folder or a glob, decoded in loader workers."""
from __future__ import annotations

import glob
import os
from typing import Callable

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from ..errors import UserError
from .datasets import describe_failure
from .decoding.images import DECODE_ERRORS, load_rgb
from .workers import ForkingLoader


def find_images(inputs: str) -> list[str]:
    """``inputs`` as a sorted list of image files: the file itself, a folder's images (recursively)
    or a glob's (``**`` recursive). Folders and globs keep torchvision's image extensions."""
    if os.path.isfile(inputs):
        return [inputs]
    if os.path.isdir(inputs):
        found = [os.path.join(d, name) for d, _, names in os.walk(inputs, followlinks=True) for name in names]
    elif glob.has_magic(inputs):
        found = [p for p in glob.glob(inputs, recursive=True) if os.path.isfile(p)]
    else:
        raise UserError(f"inputs={inputs}: no such file or folder; give an image, a folder or a glob "
                        "such as 'dir/*.jpg'")
    images = sorted(p for p in found if p.lower().endswith(IMG_EXTENSIONS))
    if not images:
        raise UserError(f"inputs={inputs}: no images found (looked for {', '.join(IMG_EXTENSIONS)})")
    return images


def has_image_header(path: str) -> bool:
    """Whether Pillow recognises ``path``'s format from its header (nothing is decoded)."""
    try:
        with Image.open(path):
            return True
    except Image.DecompressionBombError:  # an image, refused later by the decoder in its own line
        return True
    except (UnidentifiedImageError, OSError, ValueError):
        return False


class ImageFiles(Dataset):
    """Item ``i``: ``(image, i, None)``, or ``(None, i, reason)`` for a file that does not decode."""

    def __init__(self, paths: list[str], transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, int, str | None]:
        try:
            return self.transform(load_rgb(self.paths[i])), i, None
        except DECODE_ERRORS as e:
            return None, i, describe_failure(self.paths[i], e)


def collate_decoded(items: list) -> tuple[torch.Tensor | None, list[int], list[str]]:
    """The decoded images stacked (None if none decoded), their indices, the failures' reasons."""
    good = [(image, i) for image, i, reason in items if reason is None]
    images = torch.stack([image for image, _ in good]) if good else None
    return images, [i for _, i in good], [reason for _, _, reason in items if reason is not None]


def build_image_loader(paths: list[str], transform: Callable, batch_size: int, workers: int,
                       pin_memory: bool) -> DataLoader:
    return ForkingLoader(ImageFiles(paths, transform), batch_size=batch_size, num_workers=workers,
                         collate_fn=collate_decoded, pin_memory=pin_memory)
