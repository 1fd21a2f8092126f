"""Optimiser and learning-rate schedule."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..config import OptimConfig
from ..models.fishnet import CLASSIFIER_PREFIX


def param_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool,
                 backbone_lr_scale: float = 1.0) -> list[dict]:
    """The trainable parameters in groups of one weight decay and one ``lr_scale`` each: BN parameters
    and biases (1-d tensors) skip weight decay unless ``decay_norm_and_bias``; with ``backbone_lr_scale``
    other than 1, all but the classifier's final layer train at that fraction of the rate. ``model``
    is the plain model (not DDP-wrapped or compiled: those prefix the names)."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    classifier = str(getattr(model, "classifier_prefix", CLASSIFIER_PREFIX))  # a bare module: FishNet's names
    for name, p in model.named_parameters():
        if p.requires_grad:
            decay = decay_norm_and_bias or p.ndim > 1
            scaled = backbone_lr_scale != 1.0 and not name.startswith(classifier)
            groups.setdefault((decay, scaled), []).append(p)
    return [{"params": params, "weight_decay": weight_decay if decay else 0.0,
             "lr_scale": backbone_lr_scale if scaled else 1.0}
            for (decay, scaled), params in sorted(groups.items(), key=lambda item: (not item[0][0], item[0][1]))]


def build_sgd(model: nn.Module, lr: float, momentum: float, weight_decay: float, nesterov: bool,
              decay_norm_and_bias: bool, backbone_lr_scale: float = 1.0) -> torch.optim.Optimizer:
    return build_optimizer(model, OptimConfig(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                                              decay_norm_and_bias=decay_norm_and_bias,
                                              backbone_lr_scale=backbone_lr_scale))


def build_optimizer(model: nn.Module, o: OptimConfig) -> torch.optim.Optimizer:
    """``optim.name``'s optimizer over ``param_groups``: SGD and AdamW from torch, LAMB and LARS from timm
    (imported only when chosen: it takes seconds). LAMB and LARS adapt the step of the groups with weight
    decay only, so with ``decay_norm_and_bias=false`` BN parameters and biases are neither decayed nor
    adapted, as in the published recipes."""
    groups = param_groups(model, o.weight_decay, o.decay_norm_and_bias, o.backbone_lr_scale)
    betas = (o.betas[0], o.betas[1])
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov)
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr, betas=betas, eps=o.eps or 1e-8)
    from timm.optim import Lamb, Lars

    for group in groups:
        # timm adapts the groups with weight decay; with optim.weight_decay=0 it would adapt none and
        # quietly become Adam or SGD: adapt those that would have been decayed.
        decayable = o.decay_norm_and_bias or all(p.ndim > 1 for p in group["params"])
        group["always_adapt"] = o.weight_decay == 0 and decayable
    if o.name == "lamb":
        return Lamb(groups, lr=o.lr, betas=betas, eps=o.eps or 1e-6, max_grad_norm=o.max_grad_norm)
    return Lars(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, trust_coeff=o.trust_coefficient,
                eps=o.eps or 1e-8)


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

    @property
    def warmup_steps(self) -> int:
        return int(round(self.warmup_epochs * self.steps_per_epoch))

    def __call__(self, step: int) -> float:
        warmup_steps = self.warmup_steps
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
