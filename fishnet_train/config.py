"""The structured-config schema: Hydra validates every YAML file and override against it.

A typo'd key or a value of the wrong type fails when the config is composed;
``validate_train_config`` adds the checks a type cannot express.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from .errors import UserError


@dataclass
class ModelConfig:
    name: Optional[str] = "fishnet150"  # fishnet-eval: null = the checkpoint's
    num_classes: Optional[int] = 1000  # null = the dataset's (train) or the checkpoint's (eval)
    drop_rate: float = 0.0
    grad_checkpointing: bool = False
    pretrained: Optional[str] = None  # weights only: ours or released, classifier skipped if classes differ


@dataclass
class DataConfig:
    root: str = MISSING  # holds train/ and val/ ImageFolder trees
    batch_size: int = 256  # GLOBAL batch, split across processes
    eval_batch_size: Optional[int] = None  # global; defaults to batch_size
    workers: int = 8  # loader processes per training process
    train_crop: int = 224
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])
    crop_ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])
    hflip: bool = True
    lighting: float = 0.1  # AlexNet PCA lighting std; 0 turns it off
    val_resize: int = 256
    val_crop: int = 224
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    bad_images: str = "skip"  # skip | error
    scan: bool = False  # list every undecodable file before training


@dataclass
class OptimConfig:
    name: str = "sgd"
    lr: float = 0.1  # for the global batch
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    decay_norm_and_bias: bool = True  # the paper decays ALL parameters


@dataclass
class ScheduleConfig:
    name: str = "step"  # step | cosine
    milestones: list[int] = field(default_factory=lambda: [30, 60, 90])  # epochs
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.1
    min_lr: float = 0.0  # cosine floor


@dataclass
class LossConfig:
    label_smoothing: float = 0.0


@dataclass
class TrainerConfig:
    epochs: int = 100
    device: str = "auto"  # auto | cpu | cuda
    devices: str = "auto"  # processes to start on this machine: auto | N
    amp: str = "none"  # none | bf16 | fp16
    channels_last: bool = True
    compile: bool = False
    seed: int = 0
    deterministic: bool = False
    accum_steps: int = 1
    clip_grad_norm: Optional[float] = None
    sync_bn: bool = False
    resume: Optional[str] = "auto"  # auto | <path> | null
    checkpoint_every_steps: int = 0  # 0: at the end of each epoch only
    nan_policy: str = "stop"  # stop | skip
    eval_every: int = 1  # epochs
    max_steps_per_epoch: Optional[int] = None  # cap for smoke runs


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


@dataclass
class EvalOptions:
    predictions: Optional[str] = None  # CSV path: one row per image, top-5 classes and probabilities


@dataclass
class EvalConfig:
    checkpoint: str = MISSING
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name=None, num_classes=None))
    data: DataConfig = field(default_factory=lambda: DataConfig(batch_size=100, workers=4))
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalOptions = field(default_factory=EvalOptions)


def register_configs() -> None:
    """Make the schemas available to the YAML defaults lists (``train_schema``, ``eval_schema``)."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="eval_schema", node=EvalConfig)


_CHOICES = {
    "data.bad_images": ("skip", "error"),
    "optim.name": ("sgd",),
    "schedule.name": ("step", "cosine"),
    "trainer.amp": ("none", "bf16", "fp16"),
    "trainer.device": ("auto", "cpu", "cuda"),
    "trainer.nan_policy": ("stop", "skip"),
}
_POSITIVE = (
    "data.batch_size", "data.train_crop", "data.val_resize", "data.val_crop",
    "trainer.epochs", "trainer.accum_steps", "trainer.eval_every",
)
_NON_NEGATIVE = (
    "data.workers", "data.lighting", "optim.lr", "optim.weight_decay", "optim.momentum",
    "schedule.warmup_epochs", "loss.label_smoothing", "trainer.checkpoint_every_steps",
)


def validate_config(cfg: DictConfig) -> None:
    """Checks beyond types; each failure is one ``UserError`` saying how to fix it."""
    for key, allowed in _CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value is not None and value not in allowed:
            raise UserError(f"{key}={value!r} is not one of {', '.join(allowed)}")
    for key in _POSITIVE:
        value = OmegaConf.select(cfg, key)
        if value is not None and value <= 0:
            raise UserError(f"{key} must be positive, got {value}")
    for key in _NON_NEGATIVE:
        value = OmegaConf.select(cfg, key)
        if value is not None and value < 0:
            raise UserError(f"{key} must not be negative, got {value}")
    _check_pair(cfg, "data.crop_scale", upper=1.0)
    _check_pair(cfg, "data.crop_ratio")
    if not 0.0 <= cfg.model.drop_rate < 1.0:
        raise UserError(f"model.drop_rate must be in [0, 1), got {cfg.model.drop_rate}")
    if OmegaConf.select(cfg, "loss.label_smoothing", default=0.0) >= 1.0:
        raise UserError(f"loss.label_smoothing must be below 1, got {cfg.loss.label_smoothing}")
    devices = str(cfg.trainer.devices)
    if devices != "auto" and not (devices.isdigit() and int(devices) > 0):
        raise UserError(f"trainer.devices must be 'auto' or a positive number, got {devices!r}")


def _check_pair(cfg: DictConfig, key: str, upper: Optional[float] = None) -> None:
    pair = OmegaConf.select(cfg, key)
    if pair is None:
        return
    if len(pair) != 2 or not 0 < pair[0] <= pair[1] or (upper is not None and pair[1] > upper):
        limit = f" <= {upper}" if upper is not None else ""
        raise UserError(f"{key} must be [low, high] with 0 < low <= high{limit}, got {list(pair)}")


def to_plain(cfg: Any) -> dict:
    """The resolved config as plain dicts/lists, safe for ``weights_only`` checkpoints."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
