"""Accuracy counting that sums exactly across batches and processes."""
from __future__ import annotations

import torch


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> torch.Tensor:
    """Number of samples whose target is among the top-k logits, for each k (float tensor)."""
    maxk = min(max(ks), logits.shape[1])
    top = logits.topk(maxk, dim=1).indices
    hits = top.eq(targets.unsqueeze(1))
    return torch.stack([hits[:, : min(k, maxk)].any(1).sum() for k in ks]).float()


class SumMeter:
    """Running sums of several quantities in one device tensor: one all-reduce syncs them all."""

    def __init__(self, names: tuple[str, ...], device: torch.device) -> None:
        self.names = names
        self.sums = torch.zeros(len(names), dtype=torch.float64, device=device)

    def add(self, **values: torch.Tensor | float) -> None:
        for name, value in values.items():
            self.sums[self.names.index(name)] += value if isinstance(value, float) else value.detach().double()

    def totals(self) -> dict[str, float]:
        return dict(zip(self.names, self.sums.tolist()))
