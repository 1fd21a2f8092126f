"""The evaluation app (fishnet-eval): a checkpoint (this project's or a released one) on ``data.root/val``."""
from __future__ import annotations

import csv
import json
import os
from typing import Iterable, cast

import torch
from torch import nn

from ..config import DataConfig, EvalConfig
from ..data import BatchPreprocess, Split, build_val_loader
from ..data.indexing import check_data_root, val_split
from ..errors import UserError
from ..inference import fuse_for_inference, inference_compiler
from ..models import FishNet
from ..models.weights import check_checkpoint_exists
from ..processes.distributed import DistInfo, broadcast_object, init_distributed, shutdown
from ..processes.runtime import configure_process, settings_for
from ..reporting import Reporter
from ..training.build import check_model_name, effective_amp
from ..training.evaluate import EvalResult, evaluate
from ..training.guards import eval_memory_message, out_of_memory_hint
from ..validation import check_options
from .trained_model import build_trained_model, check_same_classes, inference_data, load_checkpoint


def check_eval_inputs(options: EvalConfig) -> None:
    """What the options name in the registry and on disk, checked before anything is read."""
    if options.model.name is not None:
        check_model_name(options.model.name, "model.name=..., or null to take the checkpoint's")
    check_checkpoint_exists(options.checkpoint)
    check_data_root(options.data, ("val",))
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
    reporter = Reporter(run_dir, info.is_main, tensorboard=False)
    try:
        # As the trainer sets up its processes, so that figures and speed match its validation.
        reporter.info(configure_process(settings_for(options.trainer, info.rank, info.device)))
        ckpt = load_checkpoint(options.checkpoint, options.model.name, options.model.use_ema)
        data = inference_data(options.data, ckpt, set(overridden))
        split = val_split(data)
        check_same_classes(ckpt, split.classes, split.root)
        model = build_trained_model(ckpt, options.model.num_classes)
        result = evaluate_split(options, model, data, split, info, reporter)
        if info.is_main:
            write_outputs(options, run_dir, ckpt.arch, split.classes, split.paths(), result)
        reporter.info(f"{ckpt.arch} on {result.images} images: top1 {result.top1:.2f}  top5 {result.top5:.2f}  "
                      f"loss {result.loss:.4f}")
        return result
    finally:
        reporter.close()
        shutdown()


def evaluate_split(options: EvalConfig, model: FishNet, data: DataConfig, split: Split, info: DistInfo,
                   reporter: Reporter) -> EvalResult:
    """The model's inference copy (folded, Winograd on the CPU, compiled if asked) over this process's shard."""
    t = options.trainer
    model.to(info.device).to(memory_format=torch.channels_last if t.channels_last else torch.contiguous_format)
    loader = build_val_loader(split, data, info.rank, info.world_size, pin_memory=info.device.type == "cuda")
    preprocess = BatchPreprocess(data.mean, data.std, info.device, t.channels_last)
    with inference_compiler(t.compile):
        inference_model: nn.Module = fuse_for_inference(model)
        if t.compile:
            inference_model = cast(nn.Module, torch.compile(inference_model))
        with out_of_memory_hint(eval_memory_message(loader.batch_size or 1)):
            return evaluate(inference_model, reporter.bar(loader, len(loader), "eval"), preprocess,
                            model.num_classes, info.device, effective_amp(t.amp, info.device),
                            keep_predictions=bool(options.eval.predictions))


def write_outputs(options: EvalConfig, run_dir: str, arch: str, classes: list[str], paths: list[str],
                  r: EvalResult) -> None:
    summary = {"top1": r.top1, "top5": r.top5, "loss": r.loss, "images": r.images, "classes": len(classes),
               "model": arch, "checkpoint": os.path.abspath(options.checkpoint), "skipped_images": len(r.skipped)}
    with open(os.path.join(run_dir, "eval.json"), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(run_dir, "per_class.csv"), "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["class_index", "class", "images", "correct", "top1"])
        for i, name in enumerate(classes):
            total, correct = r.class_total[i], r.class_correct[i]
            out.writerow([i, name, total, correct, f"{100.0 * correct / total:.4f}" if total else ""])
    if options.eval.predictions:
        write_predictions(options.eval.predictions, paths, r.predictions)


def write_predictions(path: str, paths: list[str], predictions: list[tuple]) -> None:
    """One row per image: ``path,target,pred1..pred5,prob1..prob5``, best first."""
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["path", "target"] + [f"pred{i}" for i in range(1, 6)] + [f"prob{i}" for i in range(1, 6)])
        for image_path, (target, classes, probs) in zip(paths, predictions):
            pad = 5 - len(classes)
            out.writerow([image_path, target, *classes, *[""] * pad, *[f"{p:.6f}" for p in probs], *[""] * pad])
