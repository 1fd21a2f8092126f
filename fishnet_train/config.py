"""The structured-config schema: Hydra validates every YAML file and override against it.

The schema's defaults are the only ones: the YAML group files say only what they change. The
dataclasses are frozen: the entry point converts the composed config once into them
(``to_options``) and code below it reads options it cannot change. ``validation.check_options`` adds
the checks a type cannot express.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


@dataclass(frozen=True)
class ModelConfig:
    name: Optional[str] = "fishnet150"  # fishnet-eval: null = the checkpoint's
    num_classes: Optional[int] = 1000  # null = the dataset's (train) or the checkpoint's (eval)
    drop_rate: float = 0.0
    grad_checkpointing: bool = False
    classifier_init: str = "auto"  # auto | released | zeros (see models/fishnet.py)
    # weights only: ours, released or safetensors; the classifier is skipped if the class counts differ
    pretrained: Optional[str] = None
    freeze_backbone: bool = False  # linear probe: only the final 1x1 classifier trains
    zero_init_residual: bool = False  # each bottleneck's last conv starts at zero: every block starts as its shortcut
    ema_decay: Optional[float] = None  # EMA of the weights, updated every ema_every_steps steps; null = off
    ema_every_steps: int = 1
    use_ema: bool = False  # read a checkpoint's EMA weights (fishnet-eval, -predict, -export, model.pretrained)


@dataclass(frozen=True)
class DataConfig:
    root: str = MISSING  # holds train/ and val/ ImageFolder trees
    batch_size: int = 256  # GLOBAL batch, split across processes
    eval_batch_size: Optional[int] = None  # global; defaults to batch_size
    workers: int = 8  # loader processes per training process
    train_crop: int = 224
    crop_scale: tuple[float, ...] = (0.08, 1.0)
    crop_ratio: tuple[float, ...] = (3 / 4, 4 / 3)
    hflip: bool = True
    lighting: float = 0.1  # AlexNet PCA lighting std; 0 turns it off
    val_resize: int = 256
    val_crop: int = 224
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    bad_images: str = "skip"  # skip | error
    scan: bool = False  # list every undecodable file before training
    format: str = "folder"  # folder (an ImageFolder root) | shards (a root made by tools/make_shards.py)
    index_cache: Optional[str] = "auto"  # folder index file: auto = <run dir>/data_index.npz; null = none
    stage_dir: Optional[str] = None  # shards: copy them here (a local disk) once per node before training
    train_decode: str = "fast"  # fast | reduced | exact: what the training crop decodes (README "Data at scale")
    # The modern recipes' augmentations, all off by default (see README "Recipes"):
    auto_augment: Optional[str] = None  # null | ra | ta_wide | aa: per image, in the workers
    ra_magnitude: int = 9  # RandAugment's magnitude (of 31 bins), 2 ops per image
    random_erase: float = 0.0  # probability per image, on the device
    mixup_alpha: float = 0.0  # per batch, on the device; with cutmix_alpha, one of the two per batch
    cutmix_alpha: float = 0.0
    repeated_aug: int = 1  # each sample R times per epoch, its copies in the same global batch; 1 = off
    # Progressive resizing: the crop grows from progressive_min_crop to train_crop, linearly over
    # the epochs progressive_epochs = [start, end], in steps of 32 px; null = off.
    progressive_min_crop: Optional[int] = None
    progressive_epochs: tuple[int, ...] = (0, 0)


@dataclass(frozen=True)
class OptimConfig:
    name: str = "sgd"  # sgd | adamw | lamb | lars
    lr: float = 0.1  # for the global batch
    momentum: float = 0.9  # sgd, lars
    nesterov: bool = False
    weight_decay: float = 1e-4
    decay_norm_and_bias: bool = True  # the paper decays ALL parameters
    backbone_lr_scale: float = 1.0  # fine-tuning: the backbone's rate is optim.lr times this (classifier: optim.lr)
    betas: tuple[float, ...] = (0.9, 0.999)  # adamw, lamb
    eps: Optional[float] = None  # null: the optimizer's own (adamw, lars 1e-8; lamb 1e-6)
    trust_coefficient: float = 0.001  # lars
    max_grad_norm: Optional[float] = 1.0  # lamb's global gradient clipping (null: none)


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = "step"  # step | cosine
    milestones: tuple[int, ...] = (30, 60, 90)  # epochs
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.1
    min_lr: float = 0.0  # cosine floor


@dataclass(frozen=True)
class LossConfig:
    name: str = "ce"  # ce | bce (binary cross-entropy per class, as in "ResNet strikes back")
    label_smoothing: float = 0.0
    bce_target_thresh: Optional[float] = None  # bce: targets above it become 1, the rest 0


@dataclass(frozen=True)
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
    host_allocator: str = "keep_freed"  # keep_freed | system: how the C library's malloc serves CPU tensors
    best_by: str = "top1"  # top1 | ema_top1: which weights' val top-1 chooses best.pt
    # Where stderr is not a terminal (SLURM output files, CI, a redirect): a plain progress line
    # every this many steps or seconds, whichever comes first, instead of a bar.
    log_every_steps: int = 100
    log_every_seconds: float = 60.0


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


@dataclass(frozen=True)
class EvalOptions:
    predictions: Optional[str] = None  # CSV path: one row per image, top-5 classes and probabilities


@dataclass(frozen=True)
class EvalConfig:
    checkpoint: str = MISSING
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name=None, num_classes=None))
    data: DataConfig = field(default_factory=lambda: DataConfig(batch_size=100, workers=4))
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalOptions = field(default_factory=EvalOptions)


@dataclass(frozen=True)
class PredictOptions:
    topk: int = 5
    output: Optional[str] = None  # .csv or .jsonl: one row per image


# The apps that only read a model: data.root is not used (inputs= names the images); the data keys give
# the evaluation transform, by default the checkpoint's.
_NO_ROOT = "(unused)"


@dataclass(frozen=True)
class PredictConfig:
    checkpoint: str = MISSING
    inputs: str = MISSING  # an image, a folder (searched recursively) or a glob
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name=None, num_classes=None))
    data: DataConfig = field(default_factory=lambda: DataConfig(root=_NO_ROOT, batch_size=32, workers=2))
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    predict: PredictOptions = field(default_factory=PredictOptions)


@dataclass(frozen=True)
class ExportConfig:
    checkpoint: str = MISSING
    format: str = "safetensors"  # safetensors | onnx | torch_export
    output: str = MISSING
    opset: int = 18  # ONNX opset
    check: bool = True  # run the exported file and compare its outputs with the PyTorch model's
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name=None, num_classes=None))
    data: DataConfig = field(default_factory=lambda: DataConfig(root=_NO_ROOT, batch_size=2, workers=0))


Options = Union[TrainConfig, EvalConfig, PredictConfig, ExportConfig]


def register_configs() -> None:
    """Make the schemas available to the YAML defaults lists (``train_schema``, ``eval_schema``, ...)."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=_editable(TrainConfig))
    cs.store(name="eval_schema", node=_editable(EvalConfig))
    cs.store(name="predict_schema", node=_editable(PredictConfig))
    cs.store(name="export_schema", node=_editable(ExportConfig))


def _editable(schema: type) -> DictConfig:
    """The schema as a node Hydra can merge YAML and overrides into: OmegaConf marks the nodes
    of frozen dataclasses read-only, but only the converted options need to be."""
    node = OmegaConf.structured(schema)

    def unlock(n: DictConfig) -> None:
        OmegaConf.set_readonly(n, False)
        for key in n:
            child = OmegaConf.select(n, str(key), throw_on_missing=False)
            if isinstance(child, DictConfig):
                unlock(child)

    unlock(node)
    return node


def to_options(cfg: DictConfig) -> Options:
    """The composed config as its frozen, typed dataclasses (lists as tuples): the one conversion
    at the entry point."""
    return _frozen(OmegaConf.to_object(cfg))


def _frozen(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return dataclasses.replace(value, **{f.name: _frozen(getattr(value, f.name)) for f in fields})
    return tuple(value) if isinstance(value, list) else value


def to_plain(options: Options) -> dict[str, Any]:
    """The options as plain dicts and lists, safe for ``weights_only`` checkpoints and ``config.yaml``."""
    return _plain(dataclasses.asdict(options))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value
