"""Evaluation-time wrappers around a classifier: flip test-time augmentation and a class subset's logits."""
from __future__ import annotations

import torch
from torch import nn


class FlipAverage(nn.Module):
    """The mean of the logits of each image and its left-right mirror (not the paper's protocol)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.model(x) + self.model(torch.flip(x, dims=(3,)))) / 2


class ClassSubset(nn.Module):
    """The logits of ``outputs`` only, in that order: predictions among the subset's classes."""

    def __init__(self, model: nn.Module, outputs: list[int]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("outputs", torch.tensor(outputs, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).index_select(1, self.outputs)
