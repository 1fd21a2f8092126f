"""A trained model read back for use (fishnet-eval, fishnet-predict, fishnet-export): this project's
checkpoints, exported safetensors files and the released checkpoints, with what each carries."""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from ..config import DataConfig
from ..errors import CheckpointError, UserError, naming_option
from ..models import Network, classifier_prefix, create_model, infer_arch, list_models, load_weights, read_checkpoint
from ..models.weights import WEIGHTS_FORMAT, extract_state_dict
from ..training.checkpoint import FORMAT
from ..validation import check_data
from .eval_sets import IMAGENET_CLASSES, imagenet_wnids

# The evaluation transform a checkpoint carries, used unless given on the command line.
CHECKPOINT_DATA_KEYS = ("val_resize", "val_crop", "mean", "std")


@dataclass(frozen=True)
class LoadedCheckpoint:
    path: str
    arch: str
    num_classes: int
    state: dict[str, torch.Tensor]
    data: dict[str, Any]  # the evaluation transform it was trained with (empty for released files)
    classes: list[str] | None  # the class folders it was trained on (None: released files)
    arch_given: bool = False  # ``arch`` is model.name's, not the file's
    tracking: dict[str, Any] = dataclasses.field(default_factory=dict)  # the training run's tracked runs
    step: int = 0  # the optimizer steps it was trained for (0: not this project's training checkpoint)


def load_checkpoint(path: str, arch: str | None, ema: bool = False) -> LoadedCheckpoint:
    """The weights (``ema``: the EMA weights) and what the file says of them; ``arch`` (None: the file's,
    else inferred from the keys)."""
    raw = read_checkpoint(path)
    state = extract_state_dict(raw, ema, path)
    saved_arch = raw.get("arch") if isinstance(raw.get("arch"), str) else None
    arch_given = arch is not None
    if arch is None:
        arch = saved_arch if saved_arch in list_models() else infer_arch(state)
    classifier = f"{classifier_prefix(arch)}weight"
    if classifier not in state:
        raise CheckpointError(f"{path} has no classifier weights ({classifier}); is it a checkpoint of {arch}?")
    data: dict[str, Any] = {}
    if raw.get("format") == FORMAT and isinstance(raw.get("config"), dict):
        data = raw["config"].get("data", {})
    elif raw.get("format") == WEIGHTS_FORMAT and isinstance(raw.get("data"), dict):
        data = raw["data"]
    classes = raw.get("classes")
    if not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        classes = None
    num_classes = state[classifier].shape[0]
    if classes is not None and len(classes) != num_classes:
        raise CheckpointError(f"{path} lists {len(classes)} class names for a classifier of {num_classes} classes")
    tracking: dict[str, Any] = {}
    step = 0
    if raw.get("format") == FORMAT:
        tracked = raw.get("tracking")
        tracking = tracked if isinstance(tracked, dict) else {}
        step = int(raw.get("progress", {}).get("step", 0))
    return LoadedCheckpoint(path, arch, num_classes, state, data, classes, arch_given, tracking, step)


def inference_data(data: DataConfig, ckpt: LoadedCheckpoint, overridden: set[str]) -> DataConfig:
    """The checkpoint's evaluation sizes and normalisation, unless the command line set them."""
    taken: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in ckpt.data.items()
                             if k in CHECKPOINT_DATA_KEYS and f"data.{k}" not in overridden}
    merged = dataclasses.replace(data, **taken)
    check_data(merged)  # an overridden crop may not fit the checkpoint's resize
    return merged


def build_trained_model(ckpt: LoadedCheckpoint, num_classes: int | None = None) -> Network:
    """The checkpoint's model with its weights, in eval mode (``num_classes`` must be the file's)."""
    if num_classes is not None and num_classes != ckpt.num_classes:
        raise CheckpointError(f"{ckpt.path} predicts {ckpt.num_classes} classes, not model.num_classes={num_classes}; "
                              "set model.num_classes=null to take the checkpoint's")
    model = create_model(ckpt.arch, num_classes=ckpt.num_classes)
    with naming_option(f"model.name={ckpt.arch}") if ckpt.arch_given else contextlib.nullcontext():
        return load_weights(model, ckpt.state).eval()


def class_names(ckpt: LoadedCheckpoint) -> list[str]:
    """Names to show: the checkpoint's class folders; for a 1000-class file without them (the released
    ones), ImageNet's names as torchvision's weights metadata lists them; else the indices."""
    if ckpt.classes is not None:
        return ckpt.classes
    if ckpt.num_classes == IMAGENET_CLASSES:
        from torchvision.models import ResNet50_Weights

        return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    return [str(i) for i in range(ckpt.num_classes)]


def check_same_classes(ckpt: LoadedCheckpoint, folder_classes: list[str], folder: str) -> None:
    """Evaluating on other classes than the model's gives meaningless figures: refuse it."""
    if ckpt.classes is not None and set(ckpt.classes) != set(folder_classes):
        missing = sorted(set(ckpt.classes) - set(folder_classes))[:3]
        extra = sorted(set(folder_classes) - set(ckpt.classes))[:3]
        raise UserError(f"{folder} has other classes than {ckpt.path} was trained on (only in the checkpoint: "
                        f"{missing}, only in the folder: {extra}); evaluate on folders named as in training")
    if len(folder_classes) != ckpt.num_classes:
        raise UserError(f"{ckpt.path} predicts {ckpt.num_classes} classes but {folder} has {len(folder_classes)} "
                        "class folders; evaluate on data with the checkpoint's classes")
    if ckpt.classes is None:
        check_imagenet_order(ckpt, folder_classes, folder)
        return
    for i, (ours, theirs) in enumerate(zip(ckpt.classes, folder_classes)):
        if ours != theirs:
            raise UserError(f"{folder} has other classes than {ckpt.path} was trained on: class {i} is {theirs!r} "
                            f"there but {ours!r} in the checkpoint; evaluate on folders named as in training")


def check_imagenet_order(ckpt: LoadedCheckpoint, folder_classes: list[str], folder: str) -> None:
    """A file that names no classes (the released ones) predicts ImageNet's 1000 in sorted-wnid order: folders
    named otherwise would be scored against the wrong targets without an error."""
    if ckpt.num_classes != IMAGENET_CLASSES:
        return  # nothing to compare but the count
    wnids = imagenet_wnids()
    wrong = [(i, c) for i, c in enumerate(folder_classes) if c != wnids[i]]
    if wrong:
        i, name = wrong[0]
        raise UserError(f"{ckpt.path} names no classes, so its outputs are ImageNet's wnids in sorted order, but class "
                        f"{i} of {folder} is {name!r}, not {wnids[i]!r}; evaluate on ImageNet's wnid folders (or a "
                        "test set fishnet-eval recognises, see eval.set)")
