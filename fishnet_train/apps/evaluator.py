"""The evaluation app (fishnet-eval): a checkpoint (this project's or a released one) on ``data.root/val``."""
from __future__ import annotations

import csv
import json
import os
from typing import Any, Iterable, cast

import torch
from torch import nn

from ..config import DataConfig, EvalConfig, EvalOptions
from ..data import BatchPreprocess, Split, build_val_loader
from ..errors import UserError
from ..inference import fuse_for_inference, inference_compiler
from ..inference.views import ClassSubset, FlipAverage
from ..models.weights import check_checkpoint_exists
from ..processes.distributed import DistInfo, broadcast_object, init_distributed, shutdown
from ..processes.runtime import configure_process, settings_for
from ..reporting import Reporter
from ..training.build import check_model_name, effective_amp
from ..training.evaluate import EvalResult, evaluate
from ..training.guards import eval_memory_message, out_of_memory_hint
from ..validation import check_options
from .eval_labels import read_class_subset, read_real_labels, real_label_sets, real_top1, real_top5, subset_outputs
from .eval_sets import EvalSet, read_set_split, resolve_set, timm_info_file
from .eval_tracking import results_summary, track_results
from .trained_model import (
    LoadedCheckpoint, build_trained_model, check_same_classes, inference_data, load_checkpoint,
)


def check_eval_inputs(options: EvalConfig) -> None:
    """What the options name in the registry and on disk, checked before anything is read."""
    if options.model.name is not None:
        check_model_name(options.model.name, "model.name=..., or null to take the checkpoint's")
    check_checkpoint_exists(options.checkpoint)
    e = options.eval
    resolve_set(options.data, e.set, e.real_labels, e.class_subset)
    for key, path in (("eval.real_labels", options.eval.real_labels), ("eval.class_subset", options.eval.class_subset)):
        if path and not os.path.isfile(path):
            raise UserError(f"{key}={path}: no such file (check the path)")
    out = os.path.dirname(os.path.abspath(options.eval.predictions)) if options.eval.predictions else None
    if out is not None and not os.path.isdir(out):
        raise UserError(f"eval.predictions={options.eval.predictions}: the folder {out} does not exist; create it "
                        "or write elsewhere")


def run_eval(options: EvalConfig, run_dir: str, overridden: Iterable[str] = ()) -> EvalResult:
    """Evaluate ``options.checkpoint``; rank 0 writes eval.json, per_class.csv and optional predictions.

    ``overridden``: the keys given on the command line, which win over the checkpoint's.
    """
    info = init_distributed(options.trainer.device)
    try:
        check_options(options, info.world_size)
        check_eval_inputs(options)
    except UserError:
        shutdown()
        raise
    run_dir = broadcast_object(run_dir)
    reporter = Reporter(run_dir, info.is_main)
    outcome = "failed"
    try:
        # As the trainer sets up its processes, so that figures and speed match its validation.
        runtime = configure_process(settings_for(options.trainer, info.rank, info.device))
        ckpt = load_checkpoint(options.checkpoint, options.model.name, options.model.use_ema)  # refused: one line
        reporter.info(runtime)
        data = inference_data(options.data, ckpt, set(overridden))
        e = options.eval
        eval_set = resolve_set(data, e.set, e.real_labels, e.class_subset)
        split = read_set_split(data, eval_set)
        outputs = set_outputs(options, eval_set, ckpt, split)
        real = None
        if eval_set.name == "real":
            labels = e.real_labels or timm_info_file("imagenet_real_labels.json")
            real = real_label_sets(read_real_labels(labels), split, labels)
        model = build_trained_model(ckpt, options.model.num_classes)
        result = evaluate_split(options, model, data, split, info, reporter, outputs, keep_predictions=bool(real))
        extra = {**protocol_record(e, eval_set), "val_resize": data.val_resize, "val_crop": data.val_crop,
                 "processes": info.world_size}
        if real is not None:
            top5 = [list(classes) if target >= 0 else None for target, classes, _ in result.predictions]
            extra["real_top1"], extra["real_images"] = real_top1([p[0] if p else None for p in top5], real)
            extra["real_top5"] = real_top5(top5, real)
        if info.is_main:
            write_outputs(options, run_dir, ckpt.arch, split.classes, split.paths(), result, extra)
        reporter.info(f"{ckpt.arch} on {eval_set.name} ({result.images} images): top1 {result.top1:.2f}  "
                      f"top5 {result.top5:.2f}  loss {result.loss:.4f}"
                      + (f"  ReaL top1 {extra['real_top1']:.2f}" if real else ""))
        figures = {"top1": result.top1, "top5": result.top5, "loss": result.loss, "images": result.images, **extra}
        track_results(options, run_dir, ckpt, figures, reporter)
        outcome = "finished"
        return result
    finally:
        reporter.close(outcome, results_summary(options))
        shutdown()


def set_outputs(options: EvalConfig, eval_set: EvalSet, ckpt: LoadedCheckpoint, split: Split) -> list[int] | None:
    """The model outputs the set is scored on (None: all of them), its classes checked against the model's."""
    if eval_set.subset:
        return subset_outputs(ckpt, list(eval_set.subset), split.classes, f"eval.set={eval_set.name}", split.root)
    if options.eval.class_subset:
        path = options.eval.class_subset
        return subset_outputs(ckpt, read_class_subset(path), split.classes, f"eval.class_subset={path}", split.root)
    check_same_classes(ckpt, split.classes, split.root)
    return None


def protocol_record(e: EvalOptions, eval_set: EvalSet) -> dict[str, Any]:
    """What eval.json says of the set and of the protocol beyond the published one."""
    return {"set": eval_set.name, "set_folder": os.path.abspath(eval_set.folder), "protocol": eval_set.protocol,
            "tta": e.tta, "class_subset": os.path.abspath(e.class_subset) if e.class_subset else None}


def evaluate_split(options: EvalConfig, model: nn.Module, data: DataConfig, split: Split, info: DistInfo,
                   reporter: Reporter, outputs: list[int] | None = None, keep_predictions: bool = False) -> EvalResult:
    """The model's inference copy (folded, Winograd on the CPU, flip-averaged and restricted to the class
    subset's ``outputs`` if asked, compiled if asked) over this process's shard."""
    t = options.trainer
    model.to(info.device).to(memory_format=torch.channels_last if t.channels_last else torch.contiguous_format)
    loader = build_val_loader(split, data, info.rank, info.world_size, pin_memory=info.device.type == "cuda")
    preprocess = BatchPreprocess(data.mean, data.std, info.device, t.channels_last)
    with inference_compiler(t.compile):
        inference_model: nn.Module = fuse_for_inference(model)
        if options.eval.tta == "flip":
            inference_model = FlipAverage(inference_model)
        if outputs is not None:
            inference_model = ClassSubset(inference_model, outputs).to(info.device)
        if t.compile:
            inference_model = cast(nn.Module, torch.compile(inference_model))
        with out_of_memory_hint(eval_memory_message(loader.batch_size or 1)):
            return evaluate(inference_model, reporter.bar(loader, len(loader), "eval"), preprocess,
                            len(split.classes), info.device, effective_amp(t.amp, info.device),
                            keep_predictions=keep_predictions or bool(options.eval.predictions))


def write_outputs(options: EvalConfig, run_dir: str, arch: str, classes: list[str], paths: list[str],
                  r: EvalResult, extra: dict[str, Any] | None = None) -> None:
    summary = {"top1": r.top1, "top5": r.top5, "loss": r.loss, "images": r.images, "classes": len(classes),
               "model": arch, "checkpoint": os.path.abspath(options.checkpoint), "skipped_images": len(r.skipped),
               **(extra or {})}
    with open(os.path.join(run_dir, "per_class.csv"), "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["class_index", "class", "images", "correct", "top1"])
        for i, name in enumerate(classes):
            total, correct = r.class_total[i], r.class_correct[i]
            out.writerow([i, name, total, correct, f"{100.0 * correct / total:.4f}" if total else ""])
    if options.eval.predictions:
        write_predictions(options.eval.predictions, paths, r.predictions)
    # Last and whole (a rename): its presence says the evaluation finished (fishnet-compare resumes by it).
    staged = os.path.join(run_dir, ".eval.json.tmp")
    with open(staged, "w") as f:
        json.dump(summary, f, indent=2)
    os.replace(staged, os.path.join(run_dir, "eval.json"))


def write_predictions(path: str, paths: list[str], predictions: list[tuple]) -> None:
    """One row per image: ``path,target,pred1..pred5,prob1..prob5``, best first."""
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["path", "target"] + [f"pred{i}" for i in range(1, 6)] + [f"prob{i}" for i in range(1, 6)])
        for image_path, (target, classes, probs) in zip(paths, predictions):
            if target < 0:
                continue  # did not decode: reported in the log, counted nowhere
            pad = 5 - len(classes)
            out.writerow([image_path, target, *classes, *[""] * pad, *[f"{p:.6f}" for p in probs], *[""] * pad])
