"""The export app (fishnet-export): a checkpoint as safetensors weights, an ONNX model or a torch.export program."""
from __future__ import annotations

import contextlib
import importlib.util
import os
from typing import Iterable

import torch
from torch import nn

from ..config import DataConfig, ExportConfig
from ..errors import UserError
from ..inference import export as formats
from ..models.weights import WEIGHTS_FORMAT, check_checkpoint_exists, weights_metadata
from ..reporting import Reporter
from ..training.build import check_model_name
from ..training.checkpoint import write_atomic
from ..validation import check_options
from .trained_model import CHECKPOINT_DATA_KEYS, LoadedCheckpoint, build_trained_model, inference_data, load_checkpoint

MAX_LOGIT_DIFFERENCE = 1e-4  # of the logits' range, for the exported graph against the PyTorch model


def check_export_inputs(options: ExportConfig) -> None:
    if options.model.name is not None:
        check_model_name(options.model.name, "model=..., or leave it out to take the checkpoint's")
    check_checkpoint_exists(options.checkpoint)
    folder = os.path.dirname(os.path.abspath(options.output))
    if not os.path.isdir(folder):
        raise UserError(f"output={options.output}: the folder {folder} does not exist; create it or write elsewhere")
    if os.path.abspath(options.output) == os.path.abspath(options.checkpoint):
        raise UserError(f"output={options.output} is the checkpoint itself; write the export to another file")
    if options.format == "onnx":  # torch's exporter needs onnx and onnxscript; the check runs onnxruntime
        for package in ["onnx", "onnxscript"] + (["onnxruntime"] if options.check else []):
            if importlib.util.find_spec(package) is None:
                raise UserError(f"format=onnx needs the {package} package: pip install -e '.[export]' in the checkout "
                                "(or pip install onnx onnxscript onnxruntime)")


def run_export(options: ExportConfig, run_dir: str, overridden: Iterable[str] = ()) -> str:
    """Write ``options.output``. With ``options.check`` the file is first written beside it, read back
    and compared with the PyTorch model, and only then renamed into place (removed if it fails)."""
    check_options(options)
    check_export_inputs(options)
    reporter = Reporter(run_dir, True)
    ckpt = load_checkpoint(options.checkpoint, options.model.name, options.model.use_ema)
    data = inference_data(options.data, ckpt, set(overridden))
    model = build_trained_model(ckpt, options.model.num_classes)
    staged = unchecked_path(options.output) if options.check else options.output
    write_export(options.format, ckpt, data, model, staged, options.opset)
    reporter.info(f"{ckpt.arch} ({ckpt.num_classes} classes) from {options.checkpoint} exported as {options.format} "
                  f"({os.path.getsize(staged) / 2**20:.1f} MiB)")
    if options.check:
        try:
            reporter.info(check_export(options, staged, model, data))
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(staged)
            raise
        os.replace(staged, options.output)
    reporter.info(f"written to {options.output}")
    return options.output


def unchecked_path(output: str) -> str:
    """Where the export waits for its check: beside ``output``, hidden, with the same suffix (safetensors
    files are recognised by it)."""
    folder, name = os.path.split(os.path.abspath(output))
    stem, suffix = os.path.splitext(name)
    return os.path.join(folder, f".{stem}.unchecked{suffix}")


def write_export(fmt: str, ckpt: LoadedCheckpoint, data: DataConfig, model: nn.Module, path: str, opset: int) -> None:
    if fmt == "safetensors":
        weights = formats.safetensors_bytes(ckpt.state, metadata(ckpt, data))
        write_atomic(path, lambda f: f.write(weights))
        return
    graph = formats.export_graph_model(model)
    example = torch.randn(2, 3, data.val_crop, data.val_crop, generator=torch.Generator().manual_seed(0))
    if fmt == "onnx":
        payload = formats.onnx_bytes(graph, example, opset)
        write_atomic(path, lambda f: f.write(payload))
    else:
        program = formats.export_program(graph, example)
        write_atomic(path, lambda f: torch.export.save(program, f))


def metadata(ckpt: LoadedCheckpoint, data: DataConfig) -> dict[str, str]:
    """What a safetensors file says of its weights: the model, its classes, its evaluation transform."""
    values = {"format": WEIGHTS_FORMAT, "arch": ckpt.arch, "num_classes": ckpt.num_classes,
              "data": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(data).items()
                       if k in CHECKPOINT_DATA_KEYS}}
    if ckpt.classes is not None:
        values["classes"] = ckpt.classes
    return weights_metadata(values)


def check_export(options: ExportConfig, path: str, model: nn.Module, data: DataConfig) -> str:
    """The exported file read back and run on two batch and input sizes: one line saying how close it came."""
    if options.format == "safetensors":
        exported = build_trained_model(load_checkpoint(path, options.model.name))
        same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), exported.state_dict().values()))
        if not same:
            raise UserError(f"{options.output} read back holds other weights than {options.checkpoint}; not written")
        return "check: the safetensors file reads back with bit-identical weights"
    run = formats.run_onnx if options.format == "onnx" else formats.run_program
    generator = torch.Generator().manual_seed(1)
    worst, sizes = 0.0, formats.check_sizes(data.val_crop, model)
    for batch, size in sizes:
        images = torch.randn(batch, 3, size, size, generator=generator)
        with torch.no_grad():
            reference = model(images)
        difference, same_top1 = formats.logit_difference(reference, run(path, images))
        if difference > MAX_LOGIT_DIFFERENCE or not same_top1:
            raise UserError(f"the {options.format} export differs from the PyTorch model at batch {batch}, {size} px: "
                            f"{difference:.2e} of the logit range (bound {MAX_LOGIT_DIFFERENCE:g}), same top-1: "
                            f"{same_top1}; not written (check=false writes it unchecked)")
        worst = max(worst, difference)
    shown = " and ".join(f"batch {b} at {px} px" for b, px in sizes)
    return (f"check: {options.format} outputs match the PyTorch model within {worst:.1e} of the logit range "
            f"({shown}), same top-1")
