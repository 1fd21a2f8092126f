"""Optimiser and learning-rate schedule."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..models.fishnet import CLASSIFIER_PREFIX


def param_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool,
                 backbone_lr_scale: float = 1.0) -> list[dict]:
    """The trainable parameters in groups of one weight decay and one ``lr_scale`` each: BN parameters
    and biases (1-d tensors) skip weight decay unless ``decay_norm_and_bias``; with ``backbone_lr_scale``
    other than 1, all but the classifier's final layer train at that fraction of the rate. ``model``
    is the plain model (not DDP-wrapped or compiled: those prefix the names)."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            decay = decay_norm_and_bias or p.ndim > 1
            scaled = backbone_lr_scale != 1.0 and not name.startswith(CLASSIFIER_PREFIX)
            groups.setdefault((decay, scaled), []).append(p)
    return [{"params": params, "weight_decay": weight_decay if decay else 0.0,
             "lr_scale": backbone_lr_scale if scaled else 1.0}
            for (decay, scaled), params in sorted(groups.items(), key=lambda item: (not item[0][0], item[0][1]))]


def build_sgd(model: nn.Module, lr: float, momentum: float, weight_decay: float, nesterov: bool,
              decay_norm_and_bias: bool, backbone_lr_scale: float = 1.0) -> torch.optim.SGD:
    groups = param_groups(model, weight_decay, decay_norm_and_bias, backbone_lr_scale)
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
        group["lr"] = lr * group.get("lr_scale", 1.0)
