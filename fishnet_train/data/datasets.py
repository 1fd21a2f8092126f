"""The training and evaluation datasets over a split, with a policy for undecodable files."""
from __future__ import annotations

import bisect
import itertools
import random
from typing import Callable, cast

import torch
from torch.utils.data import Dataset

from ..errors import UserError
from ..processes.signals import StopCheck, no_stop
from .decoding.images import DECODE_ERRORS, EncodedImage, UndecodableError, open_image
from .index import Split
from .transforms import ValTransform
from .workers import ForkingLoader

MAX_REPLACEMENTS = 50
NO_TARGET = -1  # an evaluation item whose file did not decode: counted nowhere


class ImageFolderDataset(Dataset):
    """Items are ``(uint8 HWC image, target, lighting alpha, skipped files)``.

    Train items are asked for by ``(index, seed, crop size or None)``: the seed fixes the sample's
    augmentation, so a run resumed mid-epoch sees the very same crops. With ``bad_images="skip"`` an
    undecodable file is reported in the item and, in training, replaced by the next decodable one; in
    evaluation it keeps its place with a blank image and the target ``NO_TARGET`` (a neighbour in its
    place would be counted twice, and per-image outputs would name the wrong file).
    """

    def __init__(self, split: Split, transform: Callable, train: bool, bad_images: str = "skip") -> None:
        self.split, self.transform, self.train, self.bad_images = split, transform, train, bad_images

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: int | tuple[int, int] | tuple[int, int, int | None]):
        index, seed, size = (*key, None)[:3] if isinstance(key, tuple) else (key, key, None)
        skipped: list[str] = []
        for attempt in range(MAX_REPLACEMENTS):
            i = (index + attempt) % len(self)
            try:  # a training crop decodes in the transform, only what it needs
                img = self._open(i)
                if self.train:
                    image, alpha = self.transform(img, random.Random(seed), size)
                else:
                    image, alpha = self.transform(img.decode()), torch.zeros(3)
            except UndecodableError as e:
                reason = describe_failure(self.split.location(i), e)
                if self.bad_images == "error":
                    raise UserError(f"cannot decode {reason} (data.bad_images=skip skips such files)") from None
                skipped.append(reason)
                if not self.train:
                    return self._blank(), NO_TARGET, torch.zeros(3), skipped
                continue
            return image, self.split.target(i), alpha, skipped
        raise UserError(f"{MAX_REPLACEMENTS} files in a row could not be decoded near {self.split.location(index)}; "
                        "run with data.scan=true")

    def _blank(self) -> torch.Tensor:
        crop = cast(ValTransform, self.transform).crop  # its output is crop x crop
        return torch.zeros(crop, crop, 3, dtype=torch.uint8)

    def _open(self, i: int) -> EncodedImage:
        try:
            data = self.split.read(i)
        except OSError as e:  # a file gone or unreadable counts as undecodable; a shard's is a UserError
            raise UndecodableError(f"{type(e).__name__}: {e.strerror or e}") from None
        return open_image(data)


def describe_failure(path: str, error: Exception) -> str:
    if isinstance(error, UndecodableError):
        return f"{path}: {error}"
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
    def __init__(self, splits: list[Split], part: int, parts: int) -> None:
        self.splits, self.ends = splits, list(itertools.accumulate(len(s) for s in splits))
        total = self.ends[-1] if self.ends else 0
        self.start, self.stop = total * part // parts, total * (part + 1) // parts

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, j: int) -> str | None:
        g = self.start + j
        k = bisect.bisect_right(self.ends, g)
        i = g - (self.ends[k - 1] if k else 0)
        try:
            open_image(self.splits[k].read(i)).decode()
        except DECODE_ERRORS as e:
            return describe_failure(self.splits[k].location(i), e)
        return None


def scan_undecodable(splits: list[Split], workers: int, part: int = 0, parts: int = 1,
                     check_stop: StopCheck = no_stop) -> list[str]:
    """Decode every file of the ``part``-th of ``parts`` contiguous shares of the samples once
    (in ``workers`` processes, which leave stop signals to this one: ``check_stop`` runs after
    each batch); the reasons for those that fail, in sample order."""
    loader = ForkingLoader(_ScanDataset(splits, part, parts), batch_size=64, num_workers=workers, collate_fn=list,
                           ignore_stop_signals=True)
    reasons: list[str] = []
    for batch in loader:
        check_stop()
        reasons += [reason for reason in batch if reason is not None]
    return reasons
