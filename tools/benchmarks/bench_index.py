"""Sample-index benchmark: loader workers' private memory over a full pass of a synthetic index
(no files: each read returns one tiny JPEG), the project's flat index against a Python list
of ``(path, target)`` tuples (the design it replaced, as torchvision's ImageFolder holds it),
and against a dataset with no index at all (what the workers grow by themselves)."""
from __future__ import annotations

import gc
import io
import os
import time
from typing import Iterator

import torch
from PIL import Image
from torch.utils.data import Dataset, SequentialSampler

from fishnet_train.data import ImageFolderDataset, SampleIndex, Split, build_loader

CLASSES = 1000


def synthetic_names(samples: int) -> Iterator[tuple[str, int]]:
    per_class = -(-samples // CLASSES)
    return ((f"n{i // per_class:08d}/n{i // per_class:08d}_{i:07d}.JPEG", i // per_class) for i in range(samples))


def tiny_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 30, 200)).save(buf, format="JPEG")
    return buf.getvalue()


class FlatStub(Split):
    """The project's split, every read answered with one tiny JPEG (after finding the sample's path)."""
    def read(self, i: int) -> bytes:
        self.path(i)
        return JPEG


class ListStub(Split):
    """The same split with its samples in a Python list of tuples."""
    def __init__(self, root: str, classes: list[str], pairs: list[tuple[str, int]]) -> None:
        super().__init__(root, classes, SampleIndex.from_pairs([]))
        object.__setattr__(self, "pairs", pairs)

    def __len__(self) -> int:
        return len(self.pairs)  # type: ignore[attr-defined]

    def path(self, i: int) -> str:
        return os.path.join(self.root, self.pairs[i][0])  # type: ignore[attr-defined]

    def target(self, i: int) -> int:
        return self.pairs[i][1]  # type: ignore[attr-defined]

    def read(self, i: int) -> bytes:
        self.path(i)
        return JPEG


JPEG = tiny_jpeg()


def private_mb(pid: int) -> float:
    """Pages only this process holds (copied on write after the fork included)."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return sum(int(fields[k].split()[0]) for k in ("Private_Clean", "Private_Dirty")) / 1024


class NoIndex(Dataset):
    """What the loader's workers grow by themselves: the same items, no index at all."""
    def __init__(self, samples: int) -> None:
        self.samples, self.image = samples, torch.zeros(8, 8, 3, dtype=torch.uint8)

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, i: int) -> tuple:
        return self.image.clone(), 0, torch.zeros(3), []


def worker_pass(dataset: Dataset, workers: int, batch: int, freeze: bool = True) -> dict:
    """Each worker's private memory after its first batch and after the whole pass, through the
    trainer's loader (``freeze`` False: as it was before it froze the collector's objects)."""
    loader = build_loader(dataset, SequentialSampler(dataset), batch, workers, pin_memory=False)
    gc.unfreeze()  # each pass as the first: what an earlier one froze is not frozen
    loader.freeze_collector = freeze  # type: ignore[attr-defined]
    start: list[float] = []
    end: list[float] = []
    it = iter(loader)
    pids = [w.pid for w in it._workers]  # type: ignore[attr-defined]
    for i, _ in enumerate(it):
        if i == workers:
            start = [private_mb(p) for p in pids]
        if i == len(loader) - 1:
            end = [private_mb(p) for p in pids]
    return {"start": [round(x, 1) for x in start], "end": [round(x, 1) for x in end],
            "max_growth": round(max(e - s for s, e in zip(start, end)), 1)}


def bench_index(samples: int, workers: int, batch: int = 256) -> dict:
    """The flat index through the trainer's loader; then the list of tuples (before), the flat
    index without the frozen collector (before), and no index at all (the loader's own growth)."""
    torch.set_num_threads(1)
    classes = [f"n{c:08d}" for c in range(CLASSES)]
    begin = time.perf_counter()
    flat = FlatStub("/synthetic/train", classes, SampleIndex.from_pairs(synthetic_names(samples)))
    seconds = time.perf_counter() - begin
    result = {"samples": samples, "index_seconds": round(seconds, 2),
              "worker_private_mb": worker_pass(_dataset(flat), workers, batch),
              "parent_mb": round(private_mb(os.getpid()), 1)}
    result["flat_collector_not_frozen"] = {"worker_private_mb": worker_pass(_dataset(flat), workers, batch, False)}
    del flat
    begin = time.perf_counter()
    listed = ListStub("/synthetic/train", classes, list(synthetic_names(samples)))
    result["list_of_tuples"] = {"index_seconds": round(time.perf_counter() - begin, 2),
                                "worker_private_mb": worker_pass(_dataset(listed), workers, batch),
                                "parent_mb": round(private_mb(os.getpid()), 1)}
    del listed
    result["no_index"] = {"worker_private_mb": worker_pass(NoIndex(samples), workers, batch)}
    return result


def _dataset(split: Split) -> Dataset:
    return ImageFolderDataset(split, lambda image: image.permute(1, 2, 0), train=False)
