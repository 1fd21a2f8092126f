"""torch.hub entry points (``hubconf.py``): a model by name, with local weights if given."""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from .registry import Network, classifier_prefix, create_model
from .weights import extract_state_dict, load_weights, read_checkpoint


class FishNetFeatures(nn.Module):
    """A model without its classifier: ``forward`` returns the features at strides 4, 8, 16, 32 (FishNet's head
    features, the outputs of ResNet's and DenseNet's four stages)."""

    def __init__(self, model: Network) -> None:
        super().__init__()
        # unused parameters would trouble DDP in a detector's training
        delattr(model, model.classifier_prefix.split(".")[0])
        self.model = model
        self.feature_channels = model.feature_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model.forward_features(x)


def hub_model(name: str, weights: str | os.PathLike | None = None, num_classes: int | None = None,
              features_only: bool = False, **options: Any) -> nn.Module:
    """``name`` with ``weights`` (a released checkpoint, one of this project's, or an exported safetensors
    file; nothing is downloaded). ``num_classes`` other than the file's starts a new classifier for
    fine-tuning; ``features_only`` returns the multi-scale features instead of logits."""
    state = extract_state_dict(read_checkpoint(weights)) if weights is not None else None
    file_classes = state[f"{classifier_prefix(name)}weight"].shape[0] if state is not None else None
    model = create_model(name, num_classes=num_classes or file_classes or 1000, **options)
    if state is not None:
        load_weights(model, state, skip_classifier=model.num_classes != file_classes)
    return FishNetFeatures(model) if features_only else model
