"""The checks of the options only the apps that use a trained model have (fishnet-eval, -predict,
-export); like ``validation``, they need no torch and no files."""
from __future__ import annotations

from typing import Union

from .config import EvalConfig, EvalOptions, ExportConfig, PredictConfig, PredictOptions
from .validation_rules import check_choice, check_positive, fail

# The names of fishnet-eval's test sets (apps/eval_sets.py, which needs torch, uses the same).
EVAL_SETS = ("auto", "val", "real", "imagenet-v2", "imagenet-a", "imagenet-r", "imagenet-sketch")
PREDICTION_FORMATS = (".csv", ".jsonl")
EXPORT_SUFFIXES = {"safetensors": ".safetensors", "onnx": ".onnx", "torch_export": ".pt2"}
MIN_ONNX_OPSET = 18  # torch's ONNX exporter (torch.export-based) writes opset 18 and later


def check_use_options(options: Union[EvalConfig, PredictConfig, ExportConfig]) -> None:
    if isinstance(options, EvalConfig):
        check_eval(options.eval, options.data.format)
    elif isinstance(options, PredictConfig):
        check_predict(options.predict)
    elif isinstance(options, ExportConfig):
        check_export(options)


def check_eval(e: EvalOptions, data_format: str = "folder") -> None:
    check_choice("eval.set", e.set, EVAL_SETS)
    check_choice("eval.tta", e.tta, ("none", "flip"))
    check_choice("eval.tracked_run", e.tracked_run, ("same", "new"))
    if e.real_labels and e.class_subset:
        fail("eval.real_labels scores the 1000-class ImageNet val set; it cannot go with eval.class_subset")
    if (e.real_labels or e.class_subset) and e.set not in ("auto", "val", "real"):
        option = "eval.real_labels" if e.real_labels else "eval.class_subset"
        fail(f"{option} applies to ImageNet val, not to eval.set={e.set}; drop one of them")
    if e.set == "real" and e.class_subset:
        fail("eval.set=real scores the 1000-class ImageNet val set; it cannot go with eval.class_subset")
    if data_format == "shards" and e.set not in ("auto", "val", "real"):
        fail(f"eval.set={e.set} reads the set's own folders; shards (data.format=shards) hold ImageNet val only: "
             "set data.format=folder")


def check_predict(p: PredictOptions) -> None:
    check_positive("predict.topk", p.topk)
    if p.output is not None and not p.output.endswith(PREDICTION_FORMATS):
        fail(f"predict.output={p.output} must end in .csv or .jsonl (the format is chosen by the suffix)")


def check_export(e: ExportConfig) -> None:
    check_choice("format", e.format, EXPORT_SUFFIXES)
    suffix = EXPORT_SUFFIXES[e.format]
    if not e.output.endswith(suffix):
        fail(f"output={e.output}: a {e.format} export is named *{suffix} (it is read back by its suffix); "
             f"e.g. output=model{suffix}")
    if e.opset < MIN_ONNX_OPSET:
        fail(f"opset={e.opset} is below {MIN_ONNX_OPSET}, the oldest that torch's ONNX exporter writes; "
             f"use opset={MIN_ONNX_OPSET} or later")
