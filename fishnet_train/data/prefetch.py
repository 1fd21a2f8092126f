"""Batches moved to the training device one step ahead of their use."""
from __future__ import annotations

from typing import Any, Iterable, Iterator

import torch


def _to(item: Any, device: torch.device) -> Any:
    if isinstance(item, torch.Tensor):
        return item.to(device, non_blocking=True)
    if isinstance(item, (tuple, list)):
        return type(item)(_to(x, device) for x in item)
    return item


def _record_stream(item: Any, stream: torch.cuda.Stream) -> None:
    if isinstance(item, torch.Tensor):
        item.record_stream(stream)
    elif isinstance(item, (tuple, list)):
        for x in item:
            _record_stream(x, stream)


class DevicePrefetcher:
    """Yields the batches of ``batches`` with every tensor in them on ``device``.

    On a GPU, batch i+1's copy from (pinned) host memory runs on a side stream while batch i
    computes, so the copy is off the critical path; elsewhere tensors move when they are taken.
    """

    def __init__(self, batches: Iterable, device: torch.device) -> None:
        self.batches: Iterator = iter(batches)
        self.device = device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.next_batch: Any = None
        self.exhausted = False
        if self.stream is not None:
            self._preload()

    def _preload(self) -> None:
        try:
            batch = next(self.batches)
        except StopIteration:
            self.exhausted = True
            return
        with torch.cuda.stream(self.stream):
            self.next_batch = _to(batch, self.device)

    def __iter__(self) -> DevicePrefetcher:
        return self

    def __next__(self) -> Any:
        if self.stream is None:
            return _to(next(self.batches), self.device)
        if self.exhausted:
            raise StopIteration
        current = torch.cuda.current_stream(self.device)
        current.wait_stream(self.stream)
        batch = self.next_batch
        # The tensors were allocated on the side stream; tell the caching allocator they are
        # used on the compute stream, or it could hand their memory out again too early.
        _record_stream(batch, current)
        self._preload()
        return batch
