"""Building the pieces of a training run from its typed options: data, model, optimisation."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..config import DataConfig, ModelConfig, OptimConfig, ScheduleConfig, TrainConfig
from ..data import BatchPreprocess, Split, TrainSampler, build_train_loader, build_val_loader
from ..data.indexing import check_data_root
from ..errors import UserError, naming_option
from ..models import Network, create_model, list_models, load_weights, read_checkpoint
from ..models.weights import check_checkpoint_exists, extract_state_dict
from ..processes.distributed import DistInfo
from ..validation import check_batch_split
from .checkpoint import check_resume_option
from .optim import LrSchedule


def check_model_name(name: str | None, how: str = "model=NAME") -> None:
    if name not in list_models():
        raise UserError(f"model.name={name!r} is not a known model; choose one of {', '.join(list_models())} ({how})")


def check_inputs(options: TrainConfig) -> None:
    """What the options name in the model registry and on disk, checked before the data is indexed."""
    m = options.model
    check_model_name(m.name)
    if m.pretrained:
        with naming_option("model.pretrained"):
            check_checkpoint_exists(m.pretrained)
    check_resume_option(options.trainer.resume)
    train_path, classes = check_data_root(options.data)
    if classes:  # shards: checked once their index is read
        resolve_num_classes(m.num_classes, classes, train_path)


def effective_amp(amp: str, device: torch.device) -> str:
    """The autocast mode that runs on ``device``: fp16 needs a GPU's gradient scaler; bf16 on a GPU
    needs one that computes in bf16 (compute capability 8.0 or more), not one that emulates it."""
    if amp == "bf16" and device.type == "cuda" and not native_bf16(device):
        name = torch.cuda.get_device_name(device)
        major, minor = torch.cuda.get_device_capability(device)
        raise UserError(f"trainer.amp=bf16 but {name} (compute capability {major}.{minor}) has no native bf16; "
                        "use trainer.amp=fp16 or none")
    return "none" if amp == "fp16" and device.type != "cuda" else amp


def native_bf16(device: torch.device) -> bool:
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch < 2.5 never counted emulation
        return bool(torch.cuda.is_bf16_supported())


def split_batch(global_batch: int, world_size: int, accum_steps: int) -> int:
    """Per-process micro-batch; the global batch must split exactly."""
    check_batch_split(global_batch, world_size, accum_steps)
    return global_batch // (world_size * accum_steps)


def resolve_num_classes(configured: int | None, classes: list[str], root: str) -> int:
    if configured is None:
        return len(classes)
    if configured != len(classes):
        raise UserError(
            f"model.num_classes={configured} but {root} has {len(classes)} classes; "
            f"set model.num_classes={len(classes)} (or null to take it from the data)"
        )
    return configured


def build_model(options: ModelConfig, num_classes: int) -> Network:
    """The configured model (its name was checked by ``check_inputs``)."""
    assert options.name is not None  # validation.check_model
    return create_model(options.name, num_classes=num_classes, drop_rate=options.drop_rate,
                        grad_checkpointing=options.grad_checkpointing, classifier_init=options.classifier_init,
                        zero_init_residual=options.zero_init_residual)


def load_pretrained(model: nn.Module, path: str, ema: bool = False) -> bool:
    """Weights only (``ema``: a checkpoint's EMA weights): ours, released or safetensors; returns whether
    the classifier was left as initialised (the file's has another class count)."""
    state = extract_state_dict(read_checkpoint(path), ema, path)
    key = f"{model.classifier_prefix}weight"
    fc = state.get(key)
    skip = fc is not None and fc.shape != model.state_dict()[key].shape
    load_weights(model, state, skip_classifier=skip)
    return skip


def build_schedule(optim: OptimConfig, schedule: ScheduleConfig, steps_per_epoch: int, epochs: int) -> LrSchedule:
    s = schedule
    return LrSchedule(optim.lr, steps_per_epoch, epochs, s.name, tuple(s.milestones), s.gamma, s.warmup_epochs,
                      s.warmup_start_factor, s.min_lr)


@dataclass(frozen=True)
class TrainData:
    train_loader: DataLoader
    val_loader: DataLoader
    train_sampler: TrainSampler
    classes: list[str]
    preprocess: BatchPreprocess


def build_data(data: DataConfig, splits: tuple[Split, Split], info: DistInfo, accum_steps: int, seed: int,
               channels_last: bool) -> TrainData:
    train_split, val_split = splits
    micro = split_batch(data.batch_size, info.world_size, accum_steps)
    pin = info.device.type == "cuda"
    sampler = TrainSampler(len(train_split), data.batch_size, info.rank, info.world_size, seed,
                           data.repeated_aug)
    return TrainData(
        train_loader=build_train_loader(train_split, data, sampler, micro, pin),
        val_loader=build_val_loader(val_split, data, info.rank, info.world_size, pin),
        train_sampler=sampler,
        classes=train_split.classes,
        preprocess=BatchPreprocess(data.mean, data.std, info.device, channels_last),
    )
