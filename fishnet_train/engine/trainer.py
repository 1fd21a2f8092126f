"""The training loop: set up, then per epoch train, evaluate, checkpoint and report."""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..config import to_plain
from ..data import DevicePrefetcher
from ..errors import UserError
from ..models.fuse import fuse_for_inference
from .checkpoint import (
    Progress, copy_atomic, load_training_state, restore_training_state, resume_path, rng_state, save_atomic,
    training_state,
)
from .distributed import (
    DistInfo, all_gather_objects, all_reduce_max, all_reduce_sum, broadcast_object, init_distributed, shutdown,
)
from .evaluate import EvalResult, autocast, evaluate
from .optim import LrSchedule, build_sgd, set_lr
from .reporting import Reporter
from .setup import (
    DataPipeline, build_data, build_model, check_data, configure_runtime, effective_amp, load_pretrained,
    resolve_num_classes,
)
from .signals import Preempted, StopRequest


class TrainingStopped(UserError):
    """The run cannot go on (a non-finite loss, say); the last good checkpoint is kept."""


@dataclass
class Run:
    cfg: DictConfig
    info: DistInfo
    reporter: Reporter
    model: nn.Module  # the plain model, whose state dict is saved
    step_model: nn.Module  # what runs: DDP-wrapped and/or compiled
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: LrSchedule
    data: DataPipeline
    progress: Progress
    amp: str
    steps_per_epoch: int
    ckpt_dir: str
    stop: StopRequest
    skipped: list[str] = field(default_factory=list)  # this epoch's undecodable files, this rank
    logged_bad: set[str] = field(default_factory=set)


def train(cfg: DictConfig, run_dir: str) -> dict | None:
    """Train as ``cfg`` says, writing into ``run_dir``; returns the last epoch's record."""
    info = init_distributed(cfg.trainer.device)
    run_dir = broadcast_object(run_dir)  # every rank uses rank 0's directory
    reporter = Reporter(run_dir, info.is_main)
    stop = StopRequest().install()
    try:
        return fit(prepare(cfg, run_dir, info, reporter, stop))
    except Preempted:
        handler = stop.previous_handler()
        stop.uninstall()
        if callable(handler):  # e.g. submitit's, which requeues the job
            handler(stop.signum, None)
        raise
    finally:
        stop.uninstall()
        reporter.close()
        shutdown()


def prepare(cfg: DictConfig, run_dir: str, info: DistInfo, reporter: Reporter, stop: StopRequest) -> Run:
    t, m = cfg.trainer, cfg.model
    configure_runtime(t.seed, info.rank, t.deterministic, info.device)
    splits = check_data(cfg.data, info.is_main)
    num_classes = resolve_num_classes(m.num_classes, splits[0].classes, splits[0].root)
    data = build_data(cfg.data, splits, info, t.accum_steps, t.seed, t.channels_last)
    model = build_model(m.name, num_classes, m.drop_rate, m.grad_checkpointing)
    if m.pretrained:
        load_pretrained(model, m.pretrained)
    if t.sync_bn and info.distributed:
        if info.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:  # torch's SyncBatchNorm runs on GPUs only
            reporter.warning("trainer.sync_bn needs GPUs; BatchNorm statistics stay per process on the CPU")
    model.to(info.device, memory_format=torch.channels_last if t.channels_last else torch.contiguous_format)
    o, s = cfg.optim, cfg.schedule
    optimizer = build_sgd(model, o.lr, o.momentum, o.weight_decay, o.nesterov, o.decay_norm_and_bias)
    amp = effective_amp(t.amp, info.device)
    scaler = torch.amp.GradScaler(info.device.type, enabled=amp == "fp16")
    steps = min(data.train_sampler.batches_per_epoch, t.max_steps_per_epoch or math.inf)
    schedule = LrSchedule(o.lr, steps, t.epochs, s.name, tuple(s.milestones), s.gamma, s.warmup_epochs,
                          s.warmup_start_factor, s.min_lr)
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    progress = Progress()
    resume = resume_path(t.resume, ckpt_dir)
    if resume:
        state = load_training_state(resume)
        progress = restore_training_state(state, model, optimizer, scaler, info.rank, info.world_size)
        reporter.info(f"resumed from {resume} at epoch {progress.epoch + 1}, step {progress.epoch_step} of it")
    step_model = model
    if info.distributed:
        device_ids = [info.device.index] if info.device.type == "cuda" else None
        step_model = DistributedDataParallel(model, device_ids=device_ids)
    if t.compile:
        step_model = torch.compile(step_model)
    reporter.write_text("config.yaml", OmegaConf.to_yaml(to_plain(cfg)))
    reporter.info(f"{m.name}: {sum(p.numel() for p in model.parameters()):,} parameters, {num_classes} classes, "
                  f"{info.world_size} process(es) on {info.device.type}, {steps} steps per epoch")
    return Run(cfg, info, reporter, model, step_model, optimizer, scaler, schedule, data, progress, amp, steps,
               ckpt_dir, stop)


def fit(run: Run) -> dict | None:
    cfg, p = run.cfg, run.progress
    record = None
    for epoch in range(p.epoch, cfg.trainer.epochs):
        started = time.perf_counter()
        stats = train_one_epoch(run, epoch)
        due = (epoch + 1) % cfg.trainer.eval_every == 0 or epoch + 1 == cfg.trainer.epochs
        val = validate(run) if due else None
        p.epoch, p.epoch_step = epoch + 1, 0
        is_best = val is not None and val.top1 > p.best_top1
        if is_best:
            p.best_top1, p.best_epoch = val.top1, epoch + 1
        save_checkpoint(run, best=is_best)
        record = {
            "epoch": epoch + 1, "step": p.step, "train_loss": stats["loss"],
            "val_loss": val.loss if val else None, "top1": val.top1 if val else None, "top5": val.top5 if val else None,
            "lr": stats["lr"], "images_per_sec": stats["images_per_sec"], "data_wait": stats["data_wait"],
            "epoch_seconds": time.perf_counter() - started, "skipped_images": report_skipped(run),
            "best_top1": p.best_top1, "best_epoch": p.best_epoch,
        }
        report_epoch(run, record)
    return record


def validate(run: Run) -> EvalResult:
    """Val figures of the current weights, computed exactly as fishnet-eval computes them."""
    bar = run.reporter.bar(run.data.val_loader, len(run.data.val_loader), "val")
    result = evaluate(fuse_for_inference(run.model), bar, run.data.preprocess, run.model.num_classes,
                      run.info.device, run.amp)
    run.skipped += result.skipped
    return result


def train_one_epoch(run: Run, epoch: int) -> dict:
    p, t, info = run.progress, run.cfg.trainer, run.info
    run.data.train_sampler.set_epoch(epoch, p.epoch_step, run.steps_per_epoch)
    run.step_model.train()
    loss_sum = torch.zeros((), device=info.device)
    first, waited, lr = p.epoch_step, 0.0, run.schedule(p.step)
    batches = DevicePrefetcher(run.data.train_loader, info.device)
    bar = run.reporter.bar(range(first, run.steps_per_epoch), run.steps_per_epoch - first, f"epoch {epoch + 1}/{t.epochs}")
    started = time.perf_counter()
    for _ in bar:
        lr = run.schedule(p.step)
        set_lr(run.optimizer, lr)
        before = time.perf_counter()
        micro_batches = [next(batches) for _ in range(t.accum_steps)]
        waited += time.perf_counter() - before
        loss = optimizer_step(run, micro_batches)
        crash_once_for_tests(p.step, info.rank)
        loss_sum += loss
        p.step += 1
        p.epoch_step += 1
        if hasattr(bar, "set_postfix") and p.step % 10 == 0:
            rate = (p.epoch_step - first) * run.cfg.data.batch_size / (time.perf_counter() - started)
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.4g}", img_s=f"{rate:.0f}")
            run.reporter.scalars({"train/loss": loss.item(), "train/lr": lr}, p.step)
        if run.stop.should_stop(info.device):
            save_checkpoint(run, best=False)
            raise Preempted(f"stopped by signal at epoch {epoch + 1}, step {p.epoch_step}; last.pt saved")
        if t.checkpoint_every_steps and p.step % t.checkpoint_every_steps == 0 and p.epoch_step < run.steps_per_epoch:
            save_checkpoint(run, best=False)
    elapsed = time.perf_counter() - started
    done = max(1, p.epoch_step - first)
    mean_loss = all_reduce_sum(loss_sum / done).item() / info.world_size
    return {"loss": mean_loss, "lr": lr, "images_per_sec": done * run.cfg.data.batch_size / elapsed,
            "data_wait": waited / elapsed}


def crash_once_for_tests(step: int, rank: int) -> None:
    """Test hook for elastic restarts: FISHNET_TEST_CRASH_ONCE=<marker file>:<step> makes rank 1
    (or 0 alone) die at that step unless the marker exists; it creates the marker first."""
    spec = os.environ.get("FISHNET_TEST_CRASH_ONCE")
    if not spec:
        return
    marker, crash_step = spec.rsplit(":", 1)
    victim = min(1, int(os.environ.get("WORLD_SIZE", "1")) - 1)
    if step == int(crash_step) and rank == victim and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(13)


def optimizer_step(run: Run, micro_batches: list) -> torch.Tensor:
    """One optimiser step over the micro-batches (already on the device, from the
    DevicePrefetcher); returns the step's mean loss."""
    model, accum, info = run.step_model, len(micro_batches), run.info
    lighting = run.cfg.data.lighting > 0
    total = torch.zeros((), device=info.device)
    for i, (images, y, alpha, skipped) in enumerate(micro_batches):
        run.skipped += skipped
        x = run.data.preprocess(images, alpha if lighting else None)
        last = i == accum - 1
        sync = contextlib.nullcontext() if last or not info.distributed else _ddp(model).no_sync()
        with sync:
            try:
                with autocast(info.device, run.amp):
                    loss = F.cross_entropy(model(x), y, label_smoothing=run.cfg.loss.label_smoothing) / accum
                run.scaler.scale(loss).backward()
            except torch.OutOfMemoryError:
                raise UserError(
                    f"out of GPU memory at {len(y)} images per device; keep data.batch_size and raise "
                    f"trainer.accum_steps (now {accum}) to split each step into smaller micro-batches"
                ) from None
        total += loss.detach()
    if run.cfg.trainer.clip_grad_norm:
        run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.trainer.clip_grad_norm)
    if not run.scaler.is_enabled() and not finite_everywhere(total, info):
        handle_non_finite(run, total)
        return torch.zeros((), device=info.device)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    return total


def _ddp(model: nn.Module) -> DistributedDataParallel:
    return getattr(model, "_orig_mod", model)


def finite_everywhere(loss: torch.Tensor, info: DistInfo) -> bool:
    bad = torch.isfinite(loss).logical_not().float().reshape(1)
    return not bool(all_reduce_max(bad).item())


def handle_non_finite(run: Run, loss: torch.Tensor) -> None:
    p = run.progress
    where = f"step {p.step + 1} (epoch {p.epoch + 1})"
    if run.cfg.trainer.nan_policy == "stop":
        raise TrainingStopped(
            f"loss became {loss.item()} at {where}; the last good checkpoint in {run.ckpt_dir} is kept; "
            "lower optim.lr, add schedule.warmup_epochs, or set trainer.nan_policy=skip"
        )
    run.reporter.warning(f"non-finite loss at {where}: step skipped (trainer.nan_policy=skip)")
    run.optimizer.zero_grad(set_to_none=True)


def save_checkpoint(run: Run, best: bool) -> None:
    """last.pt (and best.pt) on rank 0; every rank contributes its RNG state."""
    rngs = all_gather_objects(rng_state())
    if not run.info.is_main:
        return
    state = training_state(run.model, run.optimizer, run.scaler, run.progress, to_plain(run.cfg), rngs,
                           run.cfg.model.name, run.model.num_classes, run.data.classes, run.info.world_size)
    last = os.path.join(run.ckpt_dir, "last.pt")
    save_atomic(state, last)
    if best:
        copy_atomic(last, os.path.join(run.ckpt_dir, "best.pt"))


def report_skipped(run: Run) -> int:
    """Log each undecodable file once per run; the number of replacements this epoch."""
    everywhere = [reason for part in all_gather_objects(run.skipped) for reason in part]
    run.skipped = []
    for reason in everywhere:
        if reason not in run.logged_bad:
            run.logged_bad.add(reason)
            run.reporter.warning(f"skipped undecodable file {reason}")
    return len(everywhere)


def report_epoch(run: Run, record: dict) -> None:
    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    run.reporter.info(
        f"epoch {record['epoch']}/{run.cfg.trainer.epochs}  train_loss {record['train_loss']:.4f}  "
        f"val_loss {fmt(record['val_loss'], '.4f')}  top1 {fmt(record['top1'], '.2f')}  top5 {fmt(record['top5'], '.2f')}  "
        f"lr {record['lr']:.4g}  {record['images_per_sec']:.1f} img/s  {record['epoch_seconds']:.1f}s  "
        f"best {record['best_top1']:.2f} (epoch {record['best_epoch']})  skipped {record['skipped_images']}"
    )
    run.reporter.epoch_metrics(record)
    scalars = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k not in ("epoch", "step")}
    run.reporter.scalars(scalars, record["epoch"], prefix="epoch/")
