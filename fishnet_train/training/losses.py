"""The training loss: cross-entropy or per-class binary cross-entropy, of hard or mixed targets."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import LossConfig


def classification_loss(logits: torch.Tensor, targets: torch.Tensor, options: LossConfig) -> torch.Tensor:
    """Mean loss of ``logits`` (N, C) against class indices (N,) or class probabilities (N, C) (MixUp,
    CutMix). ``bce`` is timm's BinaryCrossEntropy ("ResNet strikes back"): the smoothed targets, made
    0/1 above ``bce_target_thresh`` where set, and the mean over images and classes."""
    smoothing = options.label_smoothing
    if options.name == "ce":
        return F.cross_entropy(logits, targets, label_smoothing=smoothing)
    # In float32 whatever the autocast type: bf16 would round the mixed and smoothed targets.
    classes = logits.shape[1]
    probs = targets.float() if targets.is_floating_point() else F.one_hot(targets, classes).float()
    if smoothing:
        probs = probs * (1.0 - smoothing) + smoothing / classes
    if options.bce_target_thresh is not None:
        probs = (probs > options.bce_target_thresh).float()
    return F.binary_cross_entropy_with_logits(logits.float(), probs)
