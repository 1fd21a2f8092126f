"""A model's cost: the multiply-accumulates of one image, counted by torch's FLOP counter."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def multiply_accumulates(model: nn.Module, size: tuple[int, int]) -> int:
    """Conv and fc multiply-accumulates of ``model`` on one ``size`` image (torch's FLOP count, halved).

    The model runs once in eval mode on its own device (a meta-device model costs no compute), and gets its
    mode back: no BatchNorm statistic or random draw of the run changes.
    """
    weight = next(model.parameters())
    x = torch.zeros(1, 3, *size, device=weight.device, dtype=weight.dtype)
    training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
    finally:
        model.train(training)
    return counter.get_total_flops() // 2
