"""Model registry: names -> builders, plus the published facts about each model."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .fishnet import FishNet, fishnet99, fishnet150, fishnet201


@dataclass(frozen=True)
class ModelInfo:
    builder: Callable[..., FishNet]
    params: int  # exact, at 1000 classes
    gmacs: float  # conv + fc multiply-accumulates at 224x224
    top1: float  # released checkpoint, step schedule, 100 epochs
    top5: float
    released_file: str


_MODELS: dict[str, ModelInfo] = {
    "fishnet99": ModelInfo(fishnet99, 16_628_904, 4.264, 77.41, 93.59, "fishnet99_ckpt.tar"),
    "fishnet150": ModelInfo(fishnet150, 24_959_400, 6.398, 78.14, 93.95, "fishnet150_ckpt.tar"),
    "fishnet201": ModelInfo(fishnet201, 44_584_552, 10.514, 78.76, 94.39, "fishnet201_ckpt_welltrain.tar"),
}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(_MODELS)


def model_info(name: str) -> ModelInfo:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _MODELS[name]


def create_model(name: str, num_classes: int = 1000, **options) -> FishNet:
    """Build a FishNet by name, e.g. ``create_model("fishnet150", num_classes=10, drop_rate=0.2)``.

    Options: ``drop_rate`` (dropout before the classifier), ``grad_checkpointing``,
    ``classifier_init`` (``auto``, ``released`` or ``zeros``) and ``zero_init_residual`` (see ``FishNet``).
    """
    return model_info(name).builder(num_classes=num_classes, **options)
