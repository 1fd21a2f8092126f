"""Every check on the typed options that a type cannot express, run before anything starts.

Each failure is one ``UserError`` that names the key, the value and how to fix it. The checks
need no torch and no files, so the apps run them on the composed config before Hydra starts
the job; what needs the file system or the model registry is checked at the job's start, before
the data is indexed (``training.build.check_inputs``).
"""
from __future__ import annotations

import math
import re
from typing import Optional, Sequence

from .config import (
    DataConfig, EvalConfig, ExportConfig, LossConfig, ModelConfig, OptimConfig, Options, ScheduleConfig, TrainConfig,
    TrainerConfig,
)
from .tracking.checks import check_tracking
from .validation_apps import check_use_options
from .validation_rules import check_choice, check_number, check_positive, check_unit_interval, fail
MIN_INPUT_SIZE = 32  # models.fishnet.MIN_INPUT_SIZE (a test checks); here so that checks need no torch
MAX_INPUT_SIZE = 8192  # beyond any image a FishNet is trained on; torch's resize overflows far above it
MAX_SEED = 2**63 - 1
MAX_BATCH = 1 << 20  # 16x the largest published ImageNet batch (64k); torch's samplers overflow far above it
CLASSIFIER_INITS = ("auto", "released", "zeros")  # models.fishnet.CLASSIFIER_INITS (a test checks)
AUTO_AUGMENTS = ("ra", "ta_wide", "aa")  # data.augment.AUTO_AUGMENTS (a test checks)
OPTIMIZERS = ("sgd", "adamw", "lamb", "lars")


def check_options(options: Options, world_size: Optional[int] = None) -> None:
    """All checks; ``world_size``, where already known, also checks that the batch splits."""
    train = isinstance(options, TrainConfig)
    check_model(options.model, train)
    # The other apps take the evaluation sizes from the checkpoint: they check the merged sizes.
    check_data(options.data, val_sizes=train)
    if not isinstance(options, ExportConfig):
        check_trainer(options.trainer)
    if isinstance(options, (TrainConfig, EvalConfig)):
        check_tracking(options.tracking)
    if isinstance(options, TrainConfig):
        check_run_name(options.name)
        check_optim(options.optim)
        check_schedule(options.schedule, options.optim, options.trainer.epochs, options.data.batch_size)
        check_loss(options.loss)
        check_progressive(options.data, options.trainer.epochs)
        check_best_by(options.trainer.best_by, options.model.ema_decay)
        if world_size is not None:
            check_batch_split(options.data.batch_size, world_size, options.trainer.accum_steps)
            check_batch_norm_sizes(options.data, options.data.batch_size // (world_size * options.trainer.accum_steps))
    else:
        check_use_options(options)


RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_run_name(name: Optional[str]) -> None:
    """A run's name is one directory below ``outputs/train``: no separator, no leading dot."""
    if name is not None and not RUN_NAME.fullmatch(name):
        fail(f"name={name!r}: a run name is one directory name of letters, digits, '.', '_' and '-' (up to 128, "
             "starting with a letter or digit), e.g. name=fishnet150-paper")


# The paper's baselines and their families, as models/registry.py builds them (a test keeps the two equal).
BASELINES = {**{f"resnet{n}": "resnet" for n in (50, 101, 152)},
             **{f"densenet{n}": "densenet" for n in (121, 161, 169, 201)}}


def check_model(m: ModelConfig, train: bool) -> None:
    if train and m.name is None:
        fail("model.name must be set (model=fishnet99|fishnet150|fishnet201, or a baseline: model=resnet50, ...)")
    check_positive("model.num_classes", m.num_classes, optional=True, hint=" (null: the data's class count)")
    check_unit_interval("model.drop_rate", m.drop_rate)
    check_choice("model.classifier_init", m.classifier_init, CLASSIFIER_INITS)
    check_baseline_options(m)
    check_number("model.ema_decay", m.ema_decay, 0.0, 1.0, low_open=True, high_open=True, optional=True)
    check_positive("model.ema_every_steps", m.ema_every_steps)


def check_baseline_options(m: ModelConfig) -> None:
    """FishNet's own options, refused for ResNet and DenseNet rather than ignored (models/registry.py's lists)."""
    family = BASELINES.get(m.name or "")
    if family is None:
        return
    if m.grad_checkpointing:
        fail(f"model.grad_checkpointing is FishNet's: {m.name} has no checkpointed stages; set it false, or lower "
             "data.batch_size (with trainer.accum_steps) to save memory")
    if m.classifier_init == "released":
        fail(f"model.classifier_init=released is FishNet's released initialisation; {m.name} takes auto "
             "(torchvision's) or zeros")
    if m.zero_init_residual and family == "densenet":
        fail(f"model.zero_init_residual: {m.name} has no residual blocks to start at zero; set it false")


DATA_FORMATS = ("folder", "shards")
TRAIN_DECODES = ("fast", "reduced", "exact")  # data/transforms.py's TRAIN_DECODES


def check_data(d: DataConfig, val_sizes: bool = True) -> None:
    for key, optional in (("batch_size", False), ("eval_batch_size", True)):
        check_positive(f"data.{key}", getattr(d, key), optional, hint=" (null: data.batch_size)" if optional else "")
        if (getattr(d, key) or 0) > MAX_BATCH:
            fail(f"data.{key}={getattr(d, key)} is larger than any batch trained on ({MAX_BATCH}); use a smaller one")
    if d.workers < 0:
        fail(f"data.workers must not be negative, got {d.workers} (0 loads in the training process)")
    for key in ("train_crop", "val_crop", "val_resize"):
        size = getattr(d, key)
        if size < MIN_INPUT_SIZE:
            fail(f"data.{key}={size} is below the models' smallest input ({MIN_INPUT_SIZE} px); "
                 f"use {MIN_INPUT_SIZE} or more")
        if size > MAX_INPUT_SIZE:
            fail(f"data.{key}={size} is larger than {MAX_INPUT_SIZE} px; use a size up to {MAX_INPUT_SIZE}")
    if val_sizes and d.val_crop > d.val_resize:
        fail(f"data.val_crop={d.val_crop} is larger than data.val_resize={d.val_resize}, the shorter side it is "
             "cropped from; lower data.val_crop or raise data.val_resize")
    check_pair("data.crop_scale", d.crop_scale, high=1.0)
    check_pair("data.crop_ratio", d.crop_ratio)
    check_number("data.lighting", d.lighting, 0.0)
    check_channels("data.mean", d.mean, positive=False)
    check_channels("data.std", d.std, positive=True)
    check_choice("data.bad_images", d.bad_images, ("skip", "error"))
    check_storage(d)
    check_augmentations(d)


def check_storage(d: DataConfig) -> None:
    check_choice("data.format", d.format, DATA_FORMATS)
    check_choice("data.train_decode", d.train_decode, TRAIN_DECODES)
    if d.stage_dir is not None and d.format != "shards":
        fail(f"data.stage_dir={d.stage_dir} copies shards, but data.format={d.format}; "
             "use data.format=shards (tools/make_shards.py) or drop data.stage_dir")


def check_augmentations(d: DataConfig) -> None:
    if d.auto_augment is not None:
        check_choice("data.auto_augment", d.auto_augment, AUTO_AUGMENTS)
    check_number("data.ra_magnitude", d.ra_magnitude, 0, 30)
    check_number("data.random_erase", d.random_erase, 0.0, 1.0)
    check_number("data.mixup_alpha", d.mixup_alpha, 0.0)
    check_number("data.cutmix_alpha", d.cutmix_alpha, 0.0)
    check_positive("data.repeated_aug", d.repeated_aug, hint=" (1: each sample once per epoch)")
    if d.repeated_aug > 0 and d.batch_size > 0 and d.batch_size % d.repeated_aug:
        fail(f"data.batch_size={d.batch_size} is not a multiple of data.repeated_aug={d.repeated_aug}: each global "
             "batch holds batch_size / repeated_aug samples, repeated_aug times each; change either")


def check_progressive(d: DataConfig, epochs: int) -> None:
    """The progressive crop sizes are FishNet inputs no larger than data.train_crop, ramped within the run."""
    low = d.progressive_min_crop
    if low is None:
        return
    if not MIN_INPUT_SIZE <= low <= d.train_crop:
        fail(f"data.progressive_min_crop={low} must be in [{MIN_INPUT_SIZE}, data.train_crop={d.train_crop}]: "
             "the crop grows from it to data.train_crop")
    ramp = list(d.progressive_epochs)
    if len(ramp) != 2 or not 0 <= ramp[0] < ramp[1] <= epochs:
        fail(f"data.progressive_epochs must be [start, end] with 0 <= start < end <= trainer.epochs={epochs} (the "
             f"crop grows from data.progressive_min_crop to data.train_crop between them), got {ramp}")


def check_pair(key: str, pair: Sequence[float], high: float = math.inf) -> None:
    if len(pair) != 2 or not all(math.isfinite(v) for v in pair) or not 0 < pair[0] <= pair[1] <= high:
        limit = f" <= {high:g}" if high != math.inf else ""
        fail(f"{key} must be [low, high] with 0 < low <= high{limit}, got {list(pair)}")


def check_channels(key: str, values: Sequence[float], positive: bool) -> None:
    if len(values) != 3:
        fail(f"{key} needs one value per RGB channel (3), got {len(values)}: {list(values)}")
    if not all(math.isfinite(v) and (v > 0 or not positive) for v in values):
        fail(f"{key} must be {'positive' if positive else 'finite'} numbers, got {list(values)}")


def check_optim(o: OptimConfig) -> None:
    check_choice("optim.name", o.name, OPTIMIZERS)
    check_number("optim.lr", o.lr, 0.0)
    check_number("optim.momentum", o.momentum, 0.0, 1.0, high_open=True)
    check_number("optim.weight_decay", o.weight_decay, 0.0)
    check_number("optim.backbone_lr_scale", o.backbone_lr_scale, 0.0)
    if o.nesterov and o.momentum == 0:
        fail("optim.nesterov=true needs momentum; set optim.momentum above 0 or optim.nesterov=false")
    if len(o.betas) != 2:
        fail(f"optim.betas needs two values [beta1, beta2], got {list(o.betas)}")
    for i, beta in enumerate(o.betas):
        check_number(f"optim.betas[{i}]", beta, 0.0, 1.0, high_open=True)
    check_number("optim.eps", o.eps, 0.0, low_open=True, optional=True)
    check_number("optim.trust_coefficient", o.trust_coefficient, 0.0, low_open=True)
    check_number("optim.max_grad_norm", o.max_grad_norm, 0.0, low_open=True, optional=True)
    check_positive("optim.lr_base_batch", o.lr_base_batch, optional=True, hint=" (null: optim.lr as given)")


def check_loss(loss: LossConfig) -> None:
    check_choice("loss.name", loss.name, ("ce", "bce"))
    check_unit_interval("loss.label_smoothing", loss.label_smoothing)
    check_number("loss.bce_target_thresh", loss.bce_target_thresh, 0.0, 1.0, high_open=True, optional=True)
    if loss.bce_target_thresh is not None and loss.name != "bce":
        fail("loss.bce_target_thresh applies to loss.name=bce only; set loss.name=bce or loss.bce_target_thresh=null")


def check_best_by(best_by: str, ema_decay: Optional[float]) -> None:
    check_choice("trainer.best_by", best_by, ("top1", "ema_top1"))
    if best_by == "ema_top1" and ema_decay is None:
        fail("trainer.best_by=ema_top1 needs EMA weights; set model.ema_decay (e.g. 0.9998) or trainer.best_by=top1")


def check_schedule(s: ScheduleConfig, o: OptimConfig, epochs: int, global_batch: int) -> None:
    check_choice("schedule.name", s.name, ("step", "cosine"))
    check_number("schedule.warmup_epochs", s.warmup_epochs, 0.0)
    if epochs > 0 and s.warmup_epochs > epochs:
        fail(f"schedule.warmup_epochs={s.warmup_epochs:g} is longer than the run (trainer.epochs={epochs}): the rate "
             f"would never reach optim.lr; set schedule.warmup_epochs to {epochs} or less")
    check_number("schedule.warmup_start_factor", s.warmup_start_factor, 0.0, 1.0, low_open=True)
    # Values no schedule may take are refused whichever is chosen; the epochs only matter to the step one.
    check_number("schedule.gamma", s.gamma, 0.0, 1.0, low_open=True)
    check_milestones(s.milestones, epochs if s.name == "step" else 0)
    if s.name != "step":
        lr = o.lr_for_batch(global_batch)  # the rate in use, scaled if optim.lr_base_batch asks
        check_number("schedule.min_lr", s.min_lr, 0.0, lr if math.isfinite(lr) else math.inf)


def check_milestones(milestones: Sequence[int], epochs: int) -> None:
    if any(m <= 0 for m in milestones) or list(milestones) != sorted(set(milestones)):
        fail(f"schedule.milestones must be increasing positive epochs, got {list(milestones)}")
    late = [m for m in milestones if m >= epochs]
    if late and epochs > 0:
        scaled = sorted({m * epochs // 100 for m in milestones} - {0})  # as the paper's 30/60/90 of 100
        fail(f"schedule.milestones {list(milestones)} include epochs the run never reaches (trainer.epochs={epochs}); "
             f"scale them to the run (e.g. schedule.milestones={scaled}), or [] for a constant rate")


def check_trainer(t: TrainerConfig) -> None:
    check_positive("trainer.epochs", t.epochs)
    check_choice("trainer.device", t.device, ("auto", "cpu", "cuda"))
    devices = str(t.devices)
    if devices != "auto" and not (devices.isdigit() and int(devices) > 0):
        fail(f"trainer.devices must be 'auto' or a positive number, got {devices!r}")
    check_choice("trainer.amp", t.amp, ("none", "bf16", "fp16"))
    if not 0 <= t.seed <= MAX_SEED:
        fail(f"trainer.seed must be in [0, 2^63), got {t.seed}")
    check_positive("trainer.accum_steps", t.accum_steps)
    check_number("trainer.clip_grad_norm", t.clip_grad_norm, 0.0, low_open=True, optional=True)
    if t.checkpoint_every_steps < 0:
        fail(f"trainer.checkpoint_every_steps must not be negative, got {t.checkpoint_every_steps} "
             "(0: at the end of each epoch only)")
    if t.keep_epochs < 0:
        fail(f"trainer.keep_epochs must not be negative, got {t.keep_epochs} (0: keep last.pt and best.pt only)")
    check_choice("trainer.nan_policy", t.nan_policy, ("stop", "skip"))
    check_positive("trainer.eval_every", t.eval_every)
    check_positive("trainer.max_steps_per_epoch", t.max_steps_per_epoch, optional=True, hint=" (null: no cap)")
    check_choice("trainer.host_allocator", t.host_allocator, ("keep_freed", "system"))
    check_positive("trainer.log_every_steps", t.log_every_steps)
    check_number("trainer.log_every_seconds", t.log_every_seconds, 0.0, low_open=True)


def check_batch_norm_sizes(d: DataConfig, micro_batch: int) -> None:
    """BatchNorm in training needs two values per channel; the deepest features are 1/32 of the crop."""
    crop = min(d.train_crop, d.progressive_min_crop or d.train_crop)
    deepest = max(1, crop // 32) ** 2
    if micro_batch * deepest < 2:
        fail(f"a micro-batch of {micro_batch} image at a {crop} px training crop leaves BatchNorm one value per "
             "channel at the deepest (1x1) features; raise data.batch_size (it is split over processes and "
             "trainer.accum_steps) or use data.train_crop=64 or more")


def check_batch_split(global_batch: int, world_size: int, accum_steps: int) -> None:
    parts = world_size * accum_steps
    if global_batch % parts:
        fail(f"data.batch_size={global_batch} does not split over {world_size} processes x "
             f"trainer.accum_steps={accum_steps}; use a multiple of {parts}")
