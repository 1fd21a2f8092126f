"""Evaluation: every image counted exactly once, whatever the number of processes."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..data import DevicePrefetcher
from ..processes.distributed import all_gather_objects, all_reduce_sum
from .metrics import topk_correct


@dataclass
class EvalResult:
    images: int
    loss: float
    top1: float  # percent
    top5: float
    class_correct: list[int] = field(default_factory=list)
    class_total: list[int] = field(default_factory=list)
    predictions: list[tuple] = field(default_factory=list)  # (target, top5 classes, top5 probs), dataset order
    skipped: list[str] = field(default_factory=list)


class EvaluationStopped(Exception):
    """A stop signal ended the pass before its last batch, on some process: raised on every process."""


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    num_classes: int,
    device: torch.device,
    amp: str = "none",
    keep_predictions: bool = False,
    stopping: Callable[[], bool] | None = None,
) -> EvalResult:
    """Loss, top-1/top-5 and per-class accuracy over this process's shard, summed over all.

    ``batches`` yields ``(images, targets, _, skipped)``; a target below 0 marks a file that did not
    decode, counted nowhere (its prediction is ``(-1, [], [])``). Shards are contiguous and in rank
    order, so the gathered predictions are in dataset order. ``stopping`` is asked before each batch:
    once it says so the pass ends there, and every process raises ``EvaluationStopped``.
    """
    model.eval()
    # images, loss, top1, top5, and whether a process stopped early: agreed in the sums' all-reduce, so
    # that the processes of a stopped pass, which ran different numbers of batches, still meet in it.
    sums = torch.zeros(5, dtype=torch.float64, device=device)
    class_correct = torch.zeros(num_classes, dtype=torch.float64, device=device)
    class_total = torch.zeros(num_classes, dtype=torch.float64, device=device)
    predictions, skipped = [], []
    for images, targets, _, bad in DevicePrefetcher(batches, device):
        if stopping is not None and stopping():
            sums[4] = 1.0
            break
        skipped += bad
        with autocast(device, amp):
            logits = model(preprocess(images))
        logits = logits.float()
        # Masked rather than selected, so that no batch waits for the device to say which are kept.
        kept = targets.ge(0).double()
        loss = F.cross_entropy(logits, targets, reduction="sum", ignore_index=-1)
        correct = topk_correct(logits, targets)  # a target of -1 is never among the classes
        sums[:4] += torch.stack([kept.sum(), loss.double(), *correct.double()])
        hit = logits.argmax(1).eq(targets).double()
        class_total.index_add_(0, targets.clamp(min=0), kept)
        class_correct.index_add_(0, targets.clamp(min=0), hit)
        if keep_predictions:
            probs, classes = F.softmax(logits, 1).topk(min(5, num_classes), dim=1)
            for i in range(len(targets)):
                target = int(targets[i])
                predictions.append((target, classes[i].tolist(), probs[i].tolist()) if target >= 0 else (-1, [], []))
    for t in (sums, class_correct, class_total):
        all_reduce_sum(t)
    images, loss, top1, top5, stopped = sums.tolist()
    if stopped:
        raise EvaluationStopped()
    if keep_predictions:
        predictions = [p for part in all_gather_objects(predictions) for p in part]
    skipped = [s for part in all_gather_objects(skipped) for s in part]
    n = max(images, 1.0)
    return EvalResult(
        images=int(images),
        loss=loss / n,
        top1=100.0 * top1 / n,
        top5=100.0 * top5 / n,
        class_correct=[int(c) for c in class_correct.tolist()],
        class_total=[int(c) for c in class_total.tolist()],
        predictions=predictions,
        skipped=skipped,
    )
