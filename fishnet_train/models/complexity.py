"""A model's size and cost: parameters, and multiply-accumulates of one image (counted on the meta
device, so no memory is allocated and no weights are computed)."""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from .registry import create_model


def multiply_accumulates(name: str, num_classes: int = 1000, size: tuple[int, int] = (224, 224)) -> int:
    """Conv and fc multiply-accumulates of ``name`` on one ``size`` image (torch's FLOP count, halved)."""
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes).eval()
        x = torch.empty(1, 3, *size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2
