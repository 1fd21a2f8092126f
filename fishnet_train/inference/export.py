"""A trained model in the formats other tools read: safetensors weights, ONNX, ``torch.export`` programs.

The ONNX and ``torch.export`` graphs are taken from the inference copy (``fuse_for_inference`` without
Winograd: every BatchNorm that follows a convolution folded into it). Their batch (up to 4096), height
and width are dynamic: FishNet resamples each skip to its partner's size, so sizes need not be
multiples of 32. ONNX graphs take any size from 32 px. A torch.export program also keeps the
guards its trace made, one of them on whether the deepest features are 1x1: a FishNet or DenseNet
exported at 61 px or more (ImageNet's 224) takes 61 px and up, exported at 32-60 px it takes 32-60 px;
a ResNet's padded stride-2 convolutions round up, so for it the line lies between 32 and 33 px.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ..models.baselines import ResNet
from .fuse import fuse_for_inference

MAX_BATCH = 4096
INPUT_NAME, OUTPUT_NAME = "images", "logits"


def safetensors_bytes(state: Mapping[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """The weights as one safetensors file (safetensors refuses tensors that share memory: none do here)."""
    from safetensors.torch import save

    return save({k: v.detach().contiguous() for k, v in state.items()}, metadata=metadata)


def export_graph_model(model: nn.Module) -> nn.Module:
    """What the ONNX and torch.export graphs hold: the model's inference copy with BatchNorms folded."""
    return fuse_for_inference(model, winograd=False)


def _dynamic_shapes() -> dict[str, dict[int, Any]]:
    # Height and width as AUTO: torch.export derives their range from the graph (a fixed minimum
    # fails at the smallest sizes, where the deepest features are 1x1 and strides specialise).
    return {"x": {0: torch.export.Dim("batch", min=1, max=MAX_BATCH), 2: torch.export.Dim.AUTO,
                  3: torch.export.Dim.AUTO}}


def export_program(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """A ``torch.export`` program of ``model`` (already the graph copy) with dynamic batch and size."""
    return torch.export.export(model, (example,), dynamic_shapes=_dynamic_shapes())


def onnx_bytes(model: nn.Module, example: torch.Tensor, opset: int) -> bytes:
    """An ONNX model (one file, weights inside) through torch's torch.export-based exporter."""
    program = torch.onnx.export(model, (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                opset_version=opset, dynamic_shapes=_dynamic_shapes(), dynamo=True,
                                external_data=False, verbose=False)
    assert program is not None  # None only when given a file to write
    return program.model_proto.SerializeToString()


def run_onnx(path: str, images: torch.Tensor) -> torch.Tensor:
    """Logits from onnxruntime's CPU provider."""
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0])


def run_program(path: str, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.export.load(path).module()(images)


def deepest_size(size: int, model: nn.Module) -> int:
    """The height of the model's deepest (stride-32) features for an input of ``size`` px."""
    size = (size - 1) // 2 + 1  # stem: a convolution, stride 2
    size = (size - 1) // 2 + 1  # 3x3 max pooling, stride 2
    if isinstance(model, ResNet):  # three 3x3 convolutions of stride 2, padded: they round up
        for _ in range(3):
            size = (size - 1) // 2 + 1
        return size
    return max(1, size // 8)  # FishNet, DenseNet: three 2x2 poolings, rounding down


def check_sizes(size: int, model: nn.Module) -> list[tuple[int, int]]:
    """(batch, px) pairs to run an export at: its own size, and another batch at another size that a
    torch.export program exported at ``size`` takes (its deepest features 1x1 exactly when size's are)."""
    tiny = deepest_size(size, model) == 1
    other = next(s for s in (size + 16, size - 8, size + 1, size - 1, size)  # ResNet at 32: 32 alone
                 if s >= 32 and (deepest_size(s, model) == 1) == tiny)
    return [(2, size), (3, other)]


def logit_difference(reference: torch.Tensor, other: torch.Tensor) -> tuple[float, bool]:
    """Largest |difference| as a fraction of the reference logits' range, and whether the top-1 classes agree."""
    span = float(reference.max() - reference.min()) or 1.0
    return float((reference - other).abs().max()) / span, bool(torch.equal(reference.argmax(1), other.argmax(1)))
