"""A model's cost: the multiply-accumulates of its convolutions and fully connected layers on one image."""
from __future__ import annotations

import torch
from torch import nn


def multiply_accumulates(model: nn.Module, size: tuple[int, int]) -> int:
    """Conv and fc multiply-accumulates of ``model`` on one ``size`` image: each layer's outputs times the
    inputs each one sums (torch's FlopCounterMode counts the same, halved, at many times the cost).

    The model runs once in eval mode on its own device (a meta-device model costs no compute), and gets its
    mode back: no BatchNorm statistic or random draw of the run changes.
    """
    total = 0

    def count(layer: nn.Module, inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(layer, nn.Conv2d):
            kh, kw = layer.kernel_size
            total += output.numel() * (layer.in_channels // layer.groups) * kh * kw
        elif isinstance(layer, nn.Linear):
            total += output.numel() * layer.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    weight = next(model.parameters())
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *size, device=weight.device, dtype=weight.dtype))
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    return total
