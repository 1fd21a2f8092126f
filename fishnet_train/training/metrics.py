"""Accuracy counting: integer hit counts, so sums over batches and processes are exact."""
from __future__ import annotations

import torch


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> torch.Tensor:
    """Number of samples whose target is among the top-k logits, for each k (float tensor)."""
    maxk = min(max(ks), logits.shape[1])
    top = logits.topk(maxk, dim=1).indices
    hits = top.eq(targets.unsqueeze(1))
    return torch.stack([hits[:, : min(k, maxk)].any(1).sum() for k in ks]).float()
