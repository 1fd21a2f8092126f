"""Optimiser and learning-rate schedule."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool) -> list[dict]:
    """One group, or two when BN parameters and biases (all 1-d tensors) skip weight decay."""
    if decay_norm_and_bias:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_sgd(
    model: nn.Module, lr: float, momentum: float, weight_decay: float, nesterov: bool, decay_norm_and_bias: bool
) -> torch.optim.SGD:
    groups = param_groups(model, weight_decay, decay_norm_and_bias)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)


@dataclass(frozen=True)
class LrSchedule:
    """Learning rate as a pure function of the global step, set before every step.

    Being a function of the step alone, it needs no state of its own in a checkpoint and
    stays right when a run resumes, on any number of processes.
    """

    base_lr: float
    steps_per_epoch: int
    epochs: int
    name: str = "step"
    milestones: Sequence[int] = (30, 60, 90)
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.1
    min_lr: float = 0.0

    def __call__(self, step: int) -> float:
        warmup_steps = int(round(self.warmup_epochs * self.steps_per_epoch))
        if step < warmup_steps:
            frac = step / warmup_steps
            return self.base_lr * (self.warmup_start_factor + (1.0 - self.warmup_start_factor) * frac)
        if self.name == "step":
            passed = sum(step >= m * self.steps_per_epoch for m in self.milestones)
            return self.base_lr * self.gamma**passed
        total = max(1, self.epochs * self.steps_per_epoch - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / total)
        return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
