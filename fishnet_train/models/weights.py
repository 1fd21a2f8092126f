"""Loading weights: this project's checkpoints, DDP-prefixed ones, the released ones and safetensors files."""
from __future__ import annotations

import json
import os
import pickle
import re
import warnings
from typing import Any, Mapping, TypeVar

import torch
from torch import nn

from ..errors import CheckpointError
from .fishnet import CLASSIFIER_PREFIX
from .registry import create_model, list_models
from .released import is_released_layout, released_to_ours

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile
_SHOWN = 5
BN_COUNT = ".num_batches_tracked"
M = TypeVar("M", bound=nn.Module)
SAFETENSORS_SUFFIX = ".safetensors"
WEIGHTS_FORMAT = "fishnet-train-weights/1"  # the metadata "format" of fishnet-export's safetensors files
_TEXT_METADATA = ("format", "arch")  # stored as they are; every other metadata value is JSON
# torchvision's released DenseNet files name a dense layer's parts "norm.1", "conv.2": today's "norm1", "conv2".
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def check_checkpoint_exists(path: str | os.PathLike) -> None:
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {os.fspath(path)} (check the path)")


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True``: tensors and plain containers, never code.
    A ``.safetensors`` file gives ``{"model": tensors, **its metadata}``."""
    path = os.fspath(path)
    check_checkpoint_exists(path)
    if path.endswith(SAFETENSORS_SUFFIX):
        return read_safetensors(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols before refusing
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = re.search(r"GLOBAL (\S+)", str(e))
        if unsafe:
            raise CheckpointError(
                f"{path} was not loaded: it would unpickle {unsafe.group(1)}, not just tensors and plain "
                "containers; if you trust the file, convert it with fishnet-convert-checkpoint --trust"
            ) from None
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint, or not one that loads safely (it does not unpickle as tensors "
            "and plain containers); if it is a legacy checkpoint you trust, convert it with "
            "fishnet-convert-checkpoint --trust"
        ) from None
    except Exception as e:  # zip/pickle/EOF errors all mean "not a checkpoint"
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({type(e).__name__}: {e})".splitlines()[0]) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict or state dict")
    return obj


def weights_metadata(values: Mapping[str, Any]) -> dict[str, str]:
    """safetensors metadata (strings only): ``format`` and ``arch`` as they are, the rest as JSON."""
    return {k: v if k in _TEXT_METADATA else json.dumps(v) for k, v in values.items()}


def read_safetensors(path: str) -> dict[str, Any]:
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
        state = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({str(e).splitlines()[0]}); "
                              "export one with fishnet-export format=safetensors") from None
    if metadata.get("format") != WEIGHTS_FORMAT:
        return {"model": state}  # another tool's file: its metadata means nothing here
    try:
        extra = {k: v if k in _TEXT_METADATA else json.loads(v) for k, v in metadata.items()}
    except ValueError as e:
        raise CheckpointError(f"{path}: its fishnet-train metadata is not valid JSON ({e}); export it again") from None
    return {**extra, "model": state}


def extract_state_dict(obj: Mapping[str, Any], ema: bool = False, path: str = "the file") -> dict[str, torch.Tensor]:
    """The model weights inside a checkpoint, in this project's key layout; ``ema``: the EMA weights
    of a fishnet-train checkpoint instead."""
    if ema:
        if not isinstance(obj.get("model_ema"), Mapping):
            raise CheckpointError(f"{path} holds no EMA weights (a run saves them with model.ema_decay set); "
                                  "set model.use_ema=false to use its weights")
        obj = {"model": obj["model_ema"]}
    for key in ("model", "state_dict"):
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError("the file holds no model state dict (expected a 'model' or 'state_dict' entry "
                              "of tensors)")
    state = dict(obj)
    if is_released_layout(state):
        state, unknown = released_to_ours(state)
        if unknown:
            raise CheckpointError(f"released-layout checkpoint has {len(unknown)} unknown keys, "
                                  f"e.g. {unknown[:_SHOWN]}")
        return state
    return {_renamed_densenet_key(_strip_wrappers(k)): v for k, v in state.items()}


def _renamed_densenet_key(key: str) -> str:
    match = _OLD_DENSENET_KEY.match(key)
    return match.group(1) + match.group(2) if match else key


def _strip_wrappers(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


def load_weights(
    model: M,
    path_or_state_dict: str | os.PathLike | Mapping[str, Any],
    skip_classifier: bool = False,
) -> M:
    """Load weights strictly into ``model``; returns it.

    Accepts a path or an already loaded dict, in this project's layout (a trainer
    checkpoint, a bare state dict, ``module.`` prefixes allowed, or a ``.safetensors`` file)
    or the released one.
    ``skip_classifier=True`` leaves the final classifier as initialised, for fine-tuning
    on a different number of classes. Any other mismatch raises one ``CheckpointError``.
    """
    if isinstance(path_or_state_dict, Mapping):
        source = extract_state_dict(path_or_state_dict)
    else:
        source = extract_state_dict(read_checkpoint(path_or_state_dict))
    target = model.state_dict()
    # Files saved before PyTorch 0.4.1 (torchvision's released ResNets and DenseNets) have no BatchNorm step counts.
    source = {**{k: v for k, v in target.items() if k.endswith(BN_COUNT) and k not in source}, **source}
    classifier = str(getattr(model, "classifier_prefix", CLASSIFIER_PREFIX))  # a bare module: FishNet's names
    if skip_classifier:
        source = {k: v for k, v in source.items() if not k.startswith(classifier)}
        target = {k: v for k, v in target.items() if not k.startswith(classifier)}
    _check_match(source, target, classifier)
    model.load_state_dict(source, strict=not skip_classifier)
    return model


def _check_match(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], classifier: str) -> None:
    missing = [k for k in target if k not in source]
    unexpected = [k for k in source if k not in target]
    shapes = [
        f"{k} {tuple(source[k].shape)} vs model {tuple(v.shape)}"
        for k, v in target.items()
        if k in source and source[k].shape != v.shape
    ]
    problems = [
        (f"{len(missing)} missing", missing),
        (f"{len(unexpected)} unexpected", unexpected),
        (f"{len(shapes)} of another shape", shapes),
    ]
    problems = [(label, items) for label, items in problems if items]
    if not problems:
        return
    parts = "; ".join(f"{label} (e.g. {', '.join(items[:_SHOWN])})" for label, items in problems)
    hint = ""
    if any(s.startswith(classifier) for s in shapes):
        hint = "; the class counts differ: set model.num_classes to match, or fine-tune with skip_classifier"
    elif missing or unexpected:
        hint = "; is it a checkpoint of another model? (the depths of one family differ, e.g. fishnet99/150/201)"
    raise CheckpointError(f"checkpoint does not fit the model: {parts}{hint}")


def infer_arch(state: Mapping[str, torch.Tensor]) -> str:
    """The registered model whose parameter names match ``state``'s (for files without a usable ``arch``)."""
    keys = {k for k in state if not k.endswith(BN_COUNT)}  # old files have no BatchNorm step counts
    for name in list_models():
        with torch.device("meta"):
            if {k for k in create_model(name).state_dict() if not k.endswith(BN_COUNT)} == keys:
                return name
    raise CheckpointError(f"the checkpoint's {len(keys)} tensors match none of {', '.join(list_models())}")
