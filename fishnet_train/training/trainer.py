"""The training run: set up, then per epoch train, validate, checkpoint and report."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import cast

import torch
from omegaconf import OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..config import ModelConfig, TrainConfig, to_plain
from ..data.augment import BatchAugment
from ..data.indexing import index_data
from ..data.decoding.restart_markers import region_decoding_notes
from ..data.transforms import progressive_crop
from ..errors import naming_option
from ..inference import fuse_for_inference
from ..models import Network
from ..processes.distributed import (
    DistInfo, all_gather_objects, broadcast_buffers, broadcast_object, init_distributed, shutdown,
)
from ..processes.peers import PeerWatch, end_together, fail_together
from ..processes.runtime import configure_process, settings_for
from ..processes.signals import Preempted, StopRequest
from ..recipe import resolve_lr
from ..reporting import Reporter, epoch_line
from ..validation import check_options
from .build import (
    TrainData, build_data, build_model, build_schedule, check_inputs, effective_amp, load_pretrained,
    resolve_num_classes,
)
from .checkpoint import Progress, copy_atomic, keep_epoch_checkpoint, rng_state, save_atomic, training_state
from .ema import WeightAverage
from .evaluate import EvalResult, EvaluationStopped, evaluate
from .guards import eval_memory_message, out_of_memory_hint
from .loop import EpochStats, LoopOptions, StepHook, StepParts, train_one_epoch
from .optim import build_optimizer
from .resume import find_start, resume, start_line
from .tracked import checkpoint_summary, run_outcome, start_tracking


@dataclass(frozen=True)
class Run:
    """A prepared run: its parts are fixed; ``progress`` is the one state that advances."""

    options: TrainConfig
    info: DistInfo
    reporter: Reporter
    parts: StepParts
    loop: LoopOptions
    data: TrainData
    ckpt_dir: str
    progress: Progress
    logged_bad: set[str] = field(default_factory=set)  # undecodable files already reported


def train(options: TrainConfig, run_dir: str, after_step: StepHook | None = None) -> dict | None:
    """Train as ``options`` say, writing into ``run_dir``; returns the last epoch's record.

    ``after_step`` is called after every optimiser step with the progress (tests inject
    failures through it).
    """
    info = init_distributed(options.trainer.device)
    watch = PeerWatch(info.store, info.rank, info.world_size) if info.distributed and info.store is not None else None
    stop = StopRequest().install()
    reporter: Reporter | None = None
    together = False  # whether every rank ends here at once (then they wait for each other)
    ended: BaseException | None = None  # what ended the run, for the trackers
    try:
        check_options(options, info.world_size)
        check_inputs(options)  # before anything is written or indexed
        run_dir = broadcast_object(run_dir)  # every rank uses rank 0's directory
        t = options.trainer
        reporter = Reporter(run_dir, info.is_main, line_every=(t.log_every_steps, t.log_every_seconds))
        record = fit(prepare(options, run_dir, info, reporter, stop), stop, after_step)
        together = True
        return record
    except Preempted as e:
        together, ended = True, e
        end_together(watch)
        handler = stop.previous_handler()
        stop.uninstall()
        if callable(handler):  # e.g. submitit's, which requeues the job
            handler(stop.signum, None)
        raise
    except BaseException as e:
        ended = e
        if watch is not None and isinstance(e, Exception):
            watch.stop()  # this rank reports for itself
            fail_together(info, e)
        raise
    finally:
        stop.uninstall()
        if reporter is not None:
            outcome = run_outcome(ended)
            summary, artifact = checkpoint_summary(os.path.join(run_dir, "checkpoints"),
                                                   options.tracking.upload_best, outcome)
            reporter.close(outcome, summary, artifact)
        if together:
            end_together(watch)
        elif watch is not None and watch.running:  # Ctrl-C, SystemExit: every rank leaves on its own
            watch.stop()
        shutdown()


def prepare(options: TrainConfig, run_dir: str, info: DistInfo, reporter: Reporter,
            stop: StopRequest | None = None) -> Run:
    options, lr_note = resolve_lr(options)
    t, d = options.trainer, options.data
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    start = find_start(t.resume, ckpt_dir, to_plain(options), info)
    reporter.info(start_line(run_dir, start, named=options.name is not None))
    reporter.info(configure_process(settings_for(t, info.rank, info.device)))
    if lr_note:
        reporter.info(lr_note)
    splits = index_data(d, info, run_dir, reporter, stop)
    for note in region_decoding_notes(d.region_decode, splits[0]):
        reporter.warning(note)
    num_classes = resolve_num_classes(options.model.num_classes, splits[0].classes, splits[0].root)
    data = build_data(d, splits, info, t.accum_steps, t.seed, t.channels_last)
    model = model_on_device(options, num_classes, info, reporter)
    optimizer = build_optimizer(model, options.optim)
    amp = effective_amp(t.amp, info.device)
    if amp != t.amp:
        reporter.warning(f"trainer.amp={t.amp} needs a GPU; training in fp32 on {info.device.type}")
    scaler = torch.amp.GradScaler(info.device.type, enabled=amp == "fp16")
    steps = min(data.train_sampler.batches_per_epoch, t.max_steps_per_epoch or data.train_sampler.batches_per_epoch)
    schedule = build_schedule(options.optim, options.schedule, steps, t.epochs)
    ema = build_ema(options.model, model, schedule.warmup_steps)
    progress, tracked = resume(start, t.resume, model, optimizer, options.optim.name, scaler, ema, data.classes, info,
                               reporter)
    augment = BatchAugment(d.random_erase, d.mixup_alpha, d.cutmix_alpha, num_classes)
    parts = StepParts(model, step_model(model, info, t.compile), optimizer, scaler, schedule, data.preprocess,
                      info.device, augment if augment.active else None, ema)
    loop = LoopOptions(steps, t.epochs, d.batch_size, t.accum_steps, amp, d.lighting > 0, options.loss,
                       t.clip_grad_norm, t.nan_policy, t.checkpoint_every_steps, t.seed, info.rank,
                       options.tracking.every_steps)
    reporter.write_text("config.yaml", OmegaConf.to_yaml(to_plain(options)))
    parameters = sum(p.numel() for p in model.parameters())
    reporter.info(f"{options.model.name}: {parameters:,} parameters, {num_classes} classes, {info.world_size} "
                  f"process(es) on {info.device.type}, {steps} steps per epoch")
    facts = {"num_classes": num_classes, "processes": info.world_size, "parameters": parameters}
    start_tracking(options, run_dir, reporter, tracked, progress.step, model, facts)
    return Run(options, info, reporter, parts, loop, data, ckpt_dir, progress)


def build_ema(m: ModelConfig, model: nn.Module, warmup_steps: int) -> WeightAverage | None:
    return WeightAverage(model, m.ema_decay, m.ema_every_steps, warmup_steps) if m.ema_decay is not None else None


def model_on_device(options: TrainConfig, num_classes: int, info: DistInfo, reporter: Reporter) -> Network:
    """The model as configured, with pretrained weights and SyncBatchNorm if asked, on the device."""
    m, t = options.model, options.trainer
    model = build_model(m, num_classes)
    if m.pretrained:
        with naming_option("model.pretrained"):
            reinitialised = load_pretrained(model, m.pretrained, m.use_ema)
        reporter.info(f"loaded weights from {m.pretrained}"
                      + (" (classifier re-initialised for the new classes)" if reinitialised else ""))
    if m.freeze_backbone:
        if not m.pretrained:
            reporter.warning("model.freeze_backbone without model.pretrained: the classifier learns random features")
        model.freeze_backbone()
    if t.sync_bn and info.distributed and info.device.type != "cuda":  # torch's SyncBatchNorm runs on GPUs only
        reporter.warning("trainer.sync_bn needs GPUs; BatchNorm statistics stay per process on the CPU")
    elif t.sync_bn and info.distributed:
        model = cast(Network, nn.SyncBatchNorm.convert_sync_batchnorm(model))  # converts the BNs in place
    return model.to(info.device).to(memory_format=torch.channels_last if t.channels_last else torch.contiguous_format)


def step_model(model: nn.Module, info: DistInfo, compile: bool) -> nn.Module:
    """What runs the steps: DDP-wrapped across processes and/or compiled."""
    if info.distributed:
        model = DistributedDataParallel(model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
    return cast(nn.Module, torch.compile(model)) if compile else model


def fit(run: Run, stop: StopRequest | None = None, after_step: StepHook | None = None) -> dict | None:
    t, d, p = run.options.trainer, run.options.data, run.progress
    record = None
    if p.epoch > 0 and p.epoch_step == 0:  # resumed at an epoch's end: its copy, if a kill prevented it
        keep_history(run, p.epoch, if_missing=True)
    for epoch in range(p.epoch, t.epochs):
        started = time.perf_counter()
        crop = progressive_crop(epoch, d.progressive_min_crop, d.train_crop, d.progressive_epochs)
        run.data.train_sampler.set_epoch(epoch, p.epoch_step, run.loop.steps_per_epoch, crop)
        stats = train_one_epoch(run.parts, run.data.train_loader, p, run.loop, reporter=run.reporter, stop=stop,
                                save=lambda: save_checkpoint(run, best=False), after_step=after_step)
        due = (epoch + 1) % t.eval_every == 0 or epoch + 1 == t.epochs
        val, ema_val = validate_epoch(run, stop) if due else (None, None)
        p.start_epoch(epoch + 1)
        chosen = ema_val if t.best_by == "ema_top1" else val
        is_best = chosen is not None and chosen.top1 > p.best_top1
        if chosen is not None and is_best:
            p.best_top1, p.best_epoch = chosen.top1, epoch + 1
        record = epoch_record(p, stats, val, time.perf_counter() - started, report_skipped(run, stats, val))
        if run.parts.ema is not None:
            record.update(ema_record(ema_val))
        run.reporter.info(epoch_line(record, t.epochs))
        # The line before the checkpoint: a run stopped between the two redoes the epoch and drops it.
        run.reporter.epoch_metrics(record)
        save_checkpoint(run, best=is_best)
        keep_history(run, epoch + 1)
    return record


def validate_epoch(run: Run, stop: StopRequest | None) -> tuple[EvalResult, EvalResult | None]:
    """The val figures of the weights and, with EMA, of their average. A stop signal ends the passes at
    their next batch: last.pt is saved with the epoch trained but not validated (which the resumed run
    validates, training no step), then ``Preempted``."""
    try:
        val = validate(run, run.parts.model, stop=stop)
        ema_val = validate(run, run.parts.ema.model, "val (EMA)", stop) if run.parts.ema is not None else None
    except EvaluationStopped:
        save_checkpoint(run, best=False)
        raise Preempted(f"stopped by signal while validating epoch {run.progress.epoch + 1}; last.pt saved, "
                        "with the epoch to validate again") from None
    return val, ema_val


def validate(run: Run, model: Network, desc: str = "val", stop: StopRequest | None = None) -> EvalResult:
    """Val figures of ``model``'s current weights, computed exactly as fishnet-eval computes them. Each
    process's BN statistics differ slightly (DDP syncs them at the start of each step, then each updates
    its own): every rank takes rank 0's, the ones saved, so the figures are those of the checkpoint."""
    broadcast_buffers(model)
    bar = run.reporter.bar(run.data.val_loader, len(run.data.val_loader), desc)
    with out_of_memory_hint(eval_memory_message(run.data.val_loader.batch_size or 1)):
        return evaluate(fuse_for_inference(model), bar, run.data.preprocess, model.num_classes, run.info.device,
                        run.loop.amp, stopping=stop.stopping if stop is not None else None)


def epoch_record(p: Progress, stats: EpochStats, val: EvalResult | None, seconds: float, skipped: int) -> dict:
    """One line of ``metrics.jsonl``."""
    return {
        "epoch": p.epoch, "step": p.step, "train_loss": stats.loss,
        "val_loss": val.loss if val else None, "top1": val.top1 if val else None, "top5": val.top5 if val else None,
        "lr": stats.lr, "images_per_sec": stats.images_per_sec, "data_wait": stats.data_wait,
        "epoch_seconds": seconds, "skipped_images": skipped, "best_top1": p.best_top1, "best_epoch": p.best_epoch,
    }


def ema_record(val: EvalResult | None) -> dict:
    """The EMA weights' val figures, beside the raw weights' in ``metrics.jsonl``."""
    return {"ema_val_loss": val.loss if val else None, "ema_top1": val.top1 if val else None,
            "ema_top5": val.top5 if val else None}


def save_checkpoint(run: Run, best: bool) -> None:
    """last.pt (and best.pt) on rank 0; every rank contributes its RNG state."""
    rngs = all_gather_objects(rng_state(run.info.device))
    if not run.info.is_main:
        return
    run.reporter.flush_tracking()
    model = run.parts.model
    ema = run.parts.ema.state() if run.parts.ema is not None else None
    state = training_state(model, run.parts.optimizer, run.parts.scaler, run.progress, to_plain(run.options), rngs,
                           run.options.model.name, model.num_classes, run.data.classes, run.info.world_size, ema,
                           run.reporter.tracking_record())
    last = os.path.join(run.ckpt_dir, "last.pt")
    save_atomic(state, last)
    if best:
        copy_atomic(last, os.path.join(run.ckpt_dir, "best.pt"))


def keep_history(run: Run, epoch: int, if_missing: bool = False) -> None:
    """With ``trainer.keep_epochs``, rank 0 copies last.pt as the checkpoint of ``epoch``."""
    keep = run.options.trainer.keep_epochs
    if keep and run.info.is_main and os.path.isfile(os.path.join(run.ckpt_dir, "last.pt")):
        keep_epoch_checkpoint(run.ckpt_dir, epoch, keep, if_missing)


def report_skipped(run: Run, stats: EpochStats, val: EvalResult | None) -> int:
    """Log each undecodable file once per run; the number of replacements this epoch, all ranks."""
    everywhere = [name for part in all_gather_objects(stats.skipped) for name in part]
    everywhere += val.skipped if val else []  # already gathered by evaluate
    for reason in everywhere:
        if reason not in run.logged_bad:
            run.logged_bad.add(reason)
            run.reporter.warning(f"skipped undecodable file {reason}")
    return len(everywhere)
