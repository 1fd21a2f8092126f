"""Model registry: names -> builders, plus the published facts about each model."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Union

from . import baselines
from .fishnet import FishNet, fishnet99, fishnet150, fishnet201

Network = Union[FishNet, baselines.ResNet, baselines.DenseNet]  # what create_model builds
FISHNET_OPTIONS = frozenset({"drop_rate", "grad_checkpointing", "classifier_init", "zero_init_residual"})
RESNET_OPTIONS = frozenset({"drop_rate", "classifier_init", "zero_init_residual"})
DENSENET_OPTIONS = frozenset({"drop_rate", "classifier_init"})
# Each option's value that means "not asked for": the only value a model without the option accepts.
_OFF: dict[str, Any] = {"drop_rate": 0.0, "grad_checkpointing": False, "classifier_init": "auto",
                        "zero_init_residual": False}


@dataclass(frozen=True)
class ModelInfo:
    builder: Callable[..., Network]
    params: int  # exact, at 1000 classes
    gmacs: float  # conv + fc multiply-accumulates at 224x224
    top1: float  # released weights: FishNet's (step schedule, 100 epochs), torchvision's IMAGENET1K_V1
    top5: float
    released_file: str
    options: frozenset[str] = FISHNET_OPTIONS  # the builder's options beyond num_classes
    family: str = "fishnet"


_MODELS: dict[str, ModelInfo] = {
    "fishnet99": ModelInfo(fishnet99, 16_628_904, 4.264, 77.41, 93.59, "fishnet99_ckpt.tar"),
    "fishnet150": ModelInfo(fishnet150, 24_959_400, 6.398, 78.14, 93.95, "fishnet150_ckpt.tar"),
    "fishnet201": ModelInfo(fishnet201, 44_584_552, 10.514, 78.76, 94.39, "fishnet201_ckpt_welltrain.tar"),
    "resnet50": ModelInfo(baselines.resnet50, 25_557_032, 4.089, 76.13, 92.862, "resnet50-0676ba61.pth",
                          RESNET_OPTIONS, "resnet"),
    "resnet101": ModelInfo(baselines.resnet101, 44_549_160, 7.801, 77.374, 93.546, "resnet101-63fe2227.pth",
                           RESNET_OPTIONS, "resnet"),
    "resnet152": ModelInfo(baselines.resnet152, 60_192_808, 11.514, 78.312, 94.046, "resnet152-394f9c45.pth",
                           RESNET_OPTIONS, "resnet"),
    "densenet121": ModelInfo(baselines.densenet121, 7_978_856, 2.834, 74.434, 91.972, "densenet121-a639ec97.pth",
                             DENSENET_OPTIONS, "densenet"),
    "densenet161": ModelInfo(baselines.densenet161, 28_681_000, 7.728, 77.138, 93.56, "densenet161-8d451a50.pth",
                             DENSENET_OPTIONS, "densenet"),
    "densenet169": ModelInfo(baselines.densenet169, 14_149_480, 3.36, 75.6, 92.806, "densenet169-b2777c0a.pth",
                             DENSENET_OPTIONS, "densenet"),
    "densenet201": ModelInfo(baselines.densenet201, 20_013_928, 4.291, 76.896, 93.37, "densenet201-c1103571.pth",
                             DENSENET_OPTIONS, "densenet"),
}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(_MODELS)


def model_info(name: str) -> ModelInfo:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _MODELS[name]


def classifier_prefix(name: str) -> str:
    """The parameter-name prefix of the model's final classifier layer (``classifier.fc.``, ``fc.``, ...)."""
    return _PREFIXES[model_info(name).family]


_PREFIXES = {"fishnet": FishNet.classifier_prefix, "resnet": baselines.ResNet.classifier_prefix,
             "densenet": baselines.DenseNet.classifier_prefix}


def create_model(name: str, num_classes: int = 1000, **options: Any) -> Network:
    """Build a model by name, e.g. ``create_model("fishnet150", num_classes=10, drop_rate=0.2)``.

    Options: ``drop_rate`` (dropout before the classifier), ``classifier_init`` (``auto``, ``zeros``; FishNet
    also ``released``), ``zero_init_residual`` (FishNet, ResNet) and ``grad_checkpointing`` (FishNet). An
    option the model does not have is refused unless it is off.
    """
    info = model_info(name)
    unknown = [k for k, v in options.items() if k not in info.options and (k not in _OFF or v != _OFF[k])]
    if unknown:
        raise ValueError(f"{name} has no option {', '.join(unknown)}")
    return info.builder(num_classes=num_classes, **{k: v for k, v in options.items() if k in info.options})
