"""The prediction app (fishnet-predict): top-k classes for images named on the command line."""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn.functional as F

from ..config import PredictConfig
from ..data import BatchPreprocess, ValTransform
from ..data.inputs import build_image_loader, find_images, has_image_header
from ..errors import UserError
from ..inference import fuse_for_inference
from ..models.weights import check_checkpoint_exists
from ..processes.distributed import resolve_device
from ..processes.runtime import configure_process, settings_for
from ..reporting import Reporter
from ..training.build import check_model_name, effective_amp
from ..training.checkpoint import write_atomic
from ..training.evaluate import autocast
from ..validation import check_options
from .trained_model import build_trained_model, class_names, inference_data, load_checkpoint


@dataclass(frozen=True)
class Prediction:
    path: str
    classes: list[int]  # best first
    names: list[str]
    probs: list[float]


def check_predict_inputs(options: PredictConfig) -> list[str]:
    """What the options name on disk, checked before anything is read; the images to classify."""
    if options.model.name is not None:
        check_model_name(options.model.name, "model=..., or leave it out to take the checkpoint's")
    check_checkpoint_exists(options.checkpoint)
    paths = find_images(options.inputs)
    if not any(has_image_header(path) for path in paths):  # stops at the first image
        raise UserError(f"inputs={options.inputs}: none of the {len(paths)} files is an image (no image format "
                        "recognised in any); give images, a folder of them or a glob")
    out = options.predict.output
    if out is not None and not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        raise UserError(f"predict.output={out}: the folder {os.path.dirname(os.path.abspath(out))} does not exist; "
                        "create it or write elsewhere")
    return paths


def run_predict(options: PredictConfig, run_dir: str, overridden: Iterable[str] = ()) -> list[Prediction]:
    """Classify ``options.inputs``; print a table, write ``predict.output``; files that do not decode are
    reported and skipped. ``overridden``: keys given on the command line (they win over the checkpoint's)."""
    check_options(options)
    paths = check_predict_inputs(options)
    device = resolve_device(options.trainer.device)
    reporter = Reporter(run_dir, True)
    runtime = configure_process(settings_for(options.trainer, 0, device))
    ckpt = load_checkpoint(options.checkpoint, options.model.name, options.model.use_ema)  # refused: the one line
    reporter.info(runtime)
    data = inference_data(options.data, ckpt, set(overridden))
    model = build_trained_model(ckpt, options.model.num_classes).to(device)
    model.to(memory_format=torch.channels_last if options.trainer.channels_last else torch.contiguous_format)
    loader = build_image_loader(paths, ValTransform(data.val_resize, data.val_crop), data.batch_size, data.workers,
                                pin_memory=device.type == "cuda")
    preprocess = BatchPreprocess(data.mean, data.std, device, options.trainer.channels_last)
    predictions, failures = predict(fuse_for_inference(model), reporter.bar(loader, len(loader), "predict"),
                                    preprocess, paths, class_names(ckpt), options.predict.topk,
                                    effective_amp(options.trainer.amp, device))
    for reason in failures:
        reporter.warning(f"skipped, cannot decode {reason}")
    if not predictions:
        raise UserError(f"inputs={options.inputs}: none of the {len(paths)} files decodes as an image")
    print(prediction_table(predictions), flush=True)
    if options.predict.output:
        write_predictions(options.predict.output, predictions, min(options.predict.topk, ckpt.num_classes))
    reporter.info(f"{ckpt.arch}: {len(predictions)} images classified, {len(failures)} skipped"
                  + (f"; written to {options.predict.output}" if options.predict.output else ""))
    return predictions


@torch.no_grad()
def predict(model: torch.nn.Module, batches: Iterable, preprocess: BatchPreprocess, paths: list[str],
            names: list[str], topk: int, amp: str = "none") -> tuple[list[Prediction], list[str]]:
    """Top-k softmax probabilities per decoded image, in the order of ``paths``; and the failures."""
    model.eval()
    predictions, failures = [], []
    for images, indices, bad in batches:
        failures += bad
        if images is None:
            continue
        with autocast(preprocess.device, amp):
            logits = model(preprocess(images))
        probs, classes = F.softmax(logits.float(), dim=1).topk(min(topk, len(names)), dim=1)
        for i, row_classes, row_probs in zip(indices, classes.tolist(), probs.tolist()):
            predictions.append(Prediction(paths[i], row_classes, [names[c] for c in row_classes], row_probs))
    return predictions, failures


def prediction_table(predictions: list[Prediction]) -> str:
    """One line per image: the path, then each class as ``name (probability %)``, best first."""
    width = max((len(p.path) for p in predictions), default=4)
    lines = [f"{'path':<{width}}  predictions"]
    for p in predictions:
        ranked = "  ".join(f"{name} ({100 * prob:.1f}%)" for name, prob in zip(p.names, p.probs))
        lines.append(f"{p.path:<{width}}  {ranked}")
    return "\n".join(lines)


def write_predictions(path: str, predictions: list[Prediction], k: int) -> None:
    """``.csv``: ``path,pred1..predK,name1..nameK,prob1..probK``; ``.jsonl``: one object per image."""
    text = io.StringIO(newline="")
    if path.endswith(".jsonl"):
        for p in predictions:
            text.write(json.dumps({"path": p.path, "classes": p.classes, "names": p.names, "probs": p.probs}) + "\n")
    else:
        out = csv.writer(text)
        out.writerow(["path", *(f"{col}{i}" for col in ("pred", "name", "prob") for i in range(1, k + 1))])
        for p in predictions:
            out.writerow([p.path, *p.classes, *p.names, *(f"{prob:.6f}" for prob in p.probs)])
    write_atomic(path, lambda f: f.write(text.getvalue().encode()))
