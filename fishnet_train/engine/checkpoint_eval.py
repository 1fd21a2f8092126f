"""Evaluate a checkpoint (this project's or a released one) on ``data.root/val``."""
from __future__ import annotations

import contextlib
import csv
import json
import os
from dataclasses import dataclass
from typing import Any, Iterable

import torch
from omegaconf import DictConfig

from ..data import BatchPreprocess, EvalSampler, ImageFolderDataset, ValTransform, build_loader, find_split
from ..errors import CheckpointError, UserError
from ..models import create_model, list_models, load_weights, read_checkpoint
from ..models.fuse import fuse_for_inference
from ..models.weights import CLASSIFIER_PREFIX, extract_state_dict
from .checkpoint import FORMAT
from .distributed import DistInfo, broadcast_object, init_distributed, shutdown
from .evaluate import EvalResult, evaluate
from .reporting import Reporter
from .setup import configure_runtime, effective_amp

# Data settings a training checkpoint carries, used unless given on the command line.
_DATA_KEYS = ("val_resize", "val_crop", "mean", "std")


@dataclass
class LoadedCheckpoint:
    arch: str
    num_classes: int
    state: dict[str, torch.Tensor]
    data: dict[str, Any]  # the training run's data config (empty for released files)


def infer_arch(state: dict[str, torch.Tensor]) -> str:
    """The model whose parameter names match the state dict's (for files without a usable ``arch``)."""
    keys = set(state)
    for name in list_models():
        with torch.device("meta"):
            if set(create_model(name).state_dict()) == keys:
                return name
    raise CheckpointError(f"the checkpoint's {len(keys)} tensors match none of {', '.join(list_models())}")


def load_checkpoint_for_eval(path: str, arch: str | None) -> LoadedCheckpoint:
    raw = read_checkpoint(path)
    state = extract_state_dict(raw)
    if CLASSIFIER_PREFIX + "weight" not in state:
        raise CheckpointError(f"{path} has no classifier weights ({CLASSIFIER_PREFIX}weight); is it a FishNet checkpoint?")
    saved_arch = raw.get("arch") if isinstance(raw.get("arch"), str) else None
    if arch is None:
        arch = saved_arch if saved_arch in list_models() else infer_arch(state)
    data = raw["config"].get("data", {}) if raw.get("format") == FORMAT and isinstance(raw.get("config"), dict) else {}
    return LoadedCheckpoint(arch, state[CLASSIFIER_PREFIX + "weight"].shape[0], state, data)


def evaluate_checkpoint(cfg: DictConfig, run_dir: str, overridden: Iterable[str] = ()) -> EvalResult:
    """Evaluate ``cfg.checkpoint``; rank 0 writes eval.json, per_class.csv and optional predictions."""
    info = init_distributed(cfg.trainer.device)
    run_dir = broadcast_object(run_dir)
    reporter = Reporter(run_dir, info.is_main, tensorboard=False)
    try:
        return _evaluate(cfg, run_dir, info, reporter, set(overridden))
    finally:
        reporter.close()
        shutdown()


def _evaluate(cfg: DictConfig, run_dir: str, info: DistInfo, reporter: Reporter, overridden: set[str]) -> EvalResult:
    # As the trainer sets up its processes: threads shared among local CPU processes, kept
    # host memory on the CPU, the GPU backend flags.
    configure_runtime(cfg.trainer.seed, info.rank, cfg.trainer.deterministic, info.device)
    ckpt = load_checkpoint_for_eval(cfg.checkpoint, cfg.model.name)
    num_classes = cfg.model.num_classes or ckpt.num_classes
    data = {k: ckpt.data.get(k, cfg.data[k]) if f"data.{k}" not in overridden else cfg.data[k] for k in _DATA_KEYS}
    split = find_split(cfg.data.root, "val")
    if len(split.classes) != num_classes:
        raise UserError(
            f"{cfg.checkpoint} predicts {num_classes} classes but {split.root} has {len(split.classes)} class folders; "
            "evaluate on data with the checkpoint's classes"
        )
    model = create_model(ckpt.arch, num_classes=num_classes)
    load_weights(model, ckpt.state)
    channels_last = cfg.trainer.channels_last
    model.to(info.device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    dataset = ImageFolderDataset(split, ValTransform(data["val_resize"], data["val_crop"]), train=False,
                                 bad_images=cfg.data.bad_images)
    batch = max(1, (cfg.data.eval_batch_size or cfg.data.batch_size) // info.world_size)
    loader = build_loader(dataset, EvalSampler(len(dataset), info.rank, info.world_size), batch, cfg.data.workers,
                          pin_memory=info.device.type == "cuda")
    preprocess = BatchPreprocess(data["mean"], data["std"], info.device, channels_last)
    amp = effective_amp(cfg.trainer.amp, info.device)  # as the trainer's validation uses it
    with inference_compiler(cfg.trainer.compile):
        inference_model = fuse_for_inference(model)
        if cfg.trainer.compile:
            inference_model = torch.compile(inference_model)
        result = evaluate(inference_model, reporter.bar(loader, len(loader), "eval"), preprocess, num_classes,
                          info.device, amp, keep_predictions=bool(cfg.eval.predictions))
    if info.is_main:
        write_outputs(cfg, run_dir, ckpt.arch, split.classes, [p for p, _ in split.samples], result)
    reporter.info(f"{ckpt.arch} on {result.images} images: top1 {result.top1:.2f}  top5 {result.top5:.2f}  "
                  f"loss {result.loss:.4f}")
    return result


def inference_compiler(enabled: bool) -> contextlib.AbstractContextManager:
    """With ``trainer.compile``, inductor freezes the weights into the graph (constant folding,
    prepacked convolution weights): the fastest CPU inference measured, after a one-off compile."""
    if not enabled:
        return contextlib.nullcontext()
    import torch._inductor.config as inductor_config

    return inductor_config.patch(freezing=True)


def write_outputs(cfg: DictConfig, run_dir: str, arch: str, classes: list[str], paths: list[str], r: EvalResult) -> None:
    summary = {"top1": r.top1, "top5": r.top5, "loss": r.loss, "images": r.images, "classes": len(classes),
               "model": arch, "checkpoint": os.path.abspath(cfg.checkpoint), "skipped_images": len(r.skipped)}
    with open(os.path.join(run_dir, "eval.json"), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(run_dir, "per_class.csv"), "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["class_index", "class", "images", "correct", "top1"])
        for i, name in enumerate(classes):
            total, correct = r.class_total[i], r.class_correct[i]
            out.writerow([i, name, total, correct, f"{100.0 * correct / total:.4f}" if total else ""])
    if cfg.eval.predictions:
        write_predictions(cfg.eval.predictions, paths, r.predictions)


def write_predictions(path: str, paths: list[str], predictions: list[tuple]) -> None:
    """One row per image: ``path,target,pred1..pred5,prob1..prob5``, best first."""
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["path", "target"] + [f"pred{i}" for i in range(1, 6)] + [f"prob{i}" for i in range(1, 6)])
        for image_path, (target, classes, probs) in zip(paths, predictions):
            pad = 5 - len(classes)
            out.writerow([image_path, target, *classes, *[""] * pad, *[f"{p:.6f}" for p in probs], *[""] * pad])
