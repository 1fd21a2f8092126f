"""The structured-config schema: Hydra validates every YAML file and override against it.

The schema's defaults are the only ones: the YAML group files say only what they change. The
dataclasses are frozen: the entry point converts the composed config once into them
(``to_options``) and code below it reads options it cannot change. ``validation.check_options`` adds
the checks a type cannot express.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

SQRT_SCALED_OPTIMIZERS = ("adamw", "lamb")  # optim.lr_base_batch scales their rate by the square root


@dataclass(frozen=True)
class ModelConfig:
    # architecture: fishnet99 | fishnet150 | fishnet201, or a baseline: resnet50 | resnet101 | resnet152 |
    # densenet121 | densenet161 | densenet169 | densenet201 (eval, predict, export: null = the checkpoint's)
    name: Optional[str] = "fishnet150"
    num_classes: Optional[int] = 1000  # null = the dataset's (train) or the checkpoint's (eval)
    drop_rate: float = 0.0  # dropout before the classifier
    grad_checkpointing: bool = False  # recompute activations in backward: less memory, same results
    classifier_init: str = "auto"  # auto | released | zeros: the final classifier's initialisation (Fine-tuning)
    # start from these weights (ours, released or safetensors); a classifier of another class count is
    # re-initialised
    pretrained: Optional[str] = None
    freeze_backbone: bool = False  # linear probe: only the final classifier layer trains
    zero_init_residual: bool = False  # each bottleneck's last conv starts at zero: every block starts as its shortcut
    ema_decay: Optional[float] = None  # EMA of the weights, decay per update; null = off
    ema_every_steps: int = 1  # optimizer steps between EMA updates
    use_ema: bool = False  # read a checkpoint's EMA weights (fishnet-eval, -predict, -export, model.pretrained)


@dataclass(frozen=True)
class DataConfig:
    root: str = MISSING  # holds train/ and val/ (class folders, or shards with data.format=shards)
    batch_size: int = 256  # GLOBAL batch, split across processes and trainer.accum_steps micro-batches
    eval_batch_size: Optional[int] = None  # global; defaults to batch_size
    workers: int = 8  # loader processes per training process
    train_crop: int = 224  # random-resized crop: output size
    crop_scale: tuple[float, ...] = (0.08, 1.0)  # random-resized crop: area fraction [low, high]
    crop_ratio: tuple[float, ...] = (3 / 4, 4 / 3)  # random-resized crop: aspect ratio [low, high]
    hflip: bool = True  # random horizontal flip
    lighting: float = 0.1  # AlexNet PCA lighting std; 0 turns it off
    val_resize: int = 256  # evaluation: resize the shorter side to this
    val_crop: int = 224  # evaluation: centre crop
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)  # normalisation per channel (ImageNet's)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)  # normalisation per channel (ImageNet's)
    bad_images: str = "skip"  # skip | error: what an undecodable file does
    scan: bool = False  # decode every file once before training and list the undecodable ones (split across ranks)
    format: str = "folder"  # folder (an ImageFolder root) | shards (made by fishnet-prepare or tools/make_shards.py)
    index_cache: Optional[str] = "auto"  # folder index file: auto = <run dir>/data_index.npz; null = none
    stage_dir: Optional[str] = None  # shards: copy them here (a local disk) once per node before training
    train_decode: str = "fast"  # fast | reduced | exact: what the training crop decodes (Data at scale)
    region_decode: bool = True  # decode only the training crop's rectangle of a JPEG: the same pixels, faster
    auto_augment: Optional[str] = None  # null | ra | ta_wide | aa: per image, in the workers (Recipes)
    ra_magnitude: int = 9  # RandAugment's magnitude (of 31 bins), 2 ops per image
    random_erase: float = 0.0  # probability per image, on the device
    mixup_alpha: float = 0.0  # per batch, on the device; 0 = off; with cutmix_alpha, one of the two per batch
    cutmix_alpha: float = 0.0  # per batch, on the device; 0 = off
    repeated_aug: int = 1  # each sample R times per epoch, its copies in the same global batch; 1 = off
    # progressive resizing: the crop grows from this to train_crop, linearly over the epochs
    # progressive_epochs, in steps of 32 px; null = off
    progressive_min_crop: Optional[int] = None
    progressive_epochs: tuple[int, ...] = (0, 0)  # progressive resizing: the ramp's [start, end] epochs


@dataclass(frozen=True)
class OptimConfig:
    name: str = "sgd"  # sgd | adamw | lamb | lars
    lr: float = 0.1  # for the global batch
    momentum: float = 0.9  # sgd, lars
    nesterov: bool = False  # sgd
    weight_decay: float = 1e-4  # L2 penalty, on all parameters unless decay_norm_and_bias=false
    decay_norm_and_bias: bool = True  # the paper decays ALL parameters; false: no decay on BN parameters and biases
    backbone_lr_scale: float = 1.0  # fine-tuning: the backbone's rate is optim.lr times this (classifier: optim.lr)
    betas: tuple[float, ...] = (0.9, 0.999)  # adamw, lamb
    eps: Optional[float] = None  # null: the optimizer's own (adamw, lars 1e-8; lamb 1e-6)
    trust_coefficient: float = 0.001  # lars
    max_grad_norm: Optional[float] = 1.0  # lamb's global gradient clipping (null: none)
    # the global batch optim.lr is meant for (the paper: 0.1 for 256): the rate in use is scaled to data.batch_size,
    # linearly for sgd and lars, by the square root for adamw and lamb; null = optim.lr as given
    lr_base_batch: Optional[int] = None

    def lr_for_batch(self, global_batch: int) -> float:
        """The rate in use for ``global_batch``: ``lr`` scaled from ``lr_base_batch`` (Goyal et al.'s linear
        rule; the square root for the adaptive optimizers, whose steps already follow the gradient's noise)."""
        if self.lr_base_batch is None:
            return self.lr
        ratio = global_batch / self.lr_base_batch
        return self.lr * (math.sqrt(ratio) if self.name in SQRT_SCALED_OPTIMIZERS else ratio)


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = "step"  # step | cosine, updated every iteration
    milestones: tuple[int, ...] = (30, 60, 90)  # step: the epochs where the rate is multiplied by gamma
    gamma: float = 0.1  # step: the factor at each milestone
    warmup_epochs: float = 0.0  # linear warmup (fractions of an epoch allowed)
    warmup_start_factor: float = 0.1  # warmup starts at optim.lr times this
    min_lr: float = 0.0  # cosine floor


@dataclass(frozen=True)
class LossConfig:
    name: str = "ce"  # ce | bce (binary cross-entropy per class, as in "ResNet strikes back")
    label_smoothing: float = 0.0  # ce and bce
    bce_target_thresh: Optional[float] = None  # bce: targets above it become 1, the rest 0


@dataclass(frozen=True)
class TrainerConfig:
    epochs: int = 100  # training epochs
    device: str = "auto"  # auto | cpu | cuda
    devices: str = "auto"  # processes to start on this machine: auto (all GPUs; 1 on the CPU) | N
    amp: str = "none"  # none | bf16 | fp16 (fp16: with a GradScaler, on a GPU; fp32 on the CPU)
    channels_last: bool = True  # NHWC memory layout (exact, faster)
    compile: bool = False  # torch.compile the model
    seed: int = 0  # each rank seeds with seed + rank
    deterministic: bool = False  # deterministic algorithms only
    accum_steps: int = 1  # micro-batches per optimizer step
    clip_grad_norm: Optional[float] = None  # gradient-norm clipping; null = none
    sync_bn: bool = False  # SyncBatchNorm across processes
    resume: Optional[str] = "auto"  # auto | <path> | null
    checkpoint_every_steps: int = 0  # also write last.pt every N steps; 0: at the end of each epoch only
    keep_epochs: int = 0  # also keep the last N epoch-end checkpoints as checkpoints/epoch-NNNN.pt; 0 = none
    nan_policy: str = "stop"  # stop | skip: what a non-finite loss does
    eval_every: int = 1  # evaluate every N epochs (and after the last)
    max_steps_per_epoch: Optional[int] = None  # cap for smoke runs
    # keep_freed | system: on the CPU, keep_freed has glibc keep freed memory for the next step
    # (Performance); system leaves malloc as it is
    host_allocator: str = "keep_freed"
    best_by: str = "top1"  # top1 | ema_top1: which weights' val top-1 chooses best.pt
    # where stderr is not a terminal (SLURM output files, CI, a redirect): a plain progress line every
    # this many steps, or log_every_seconds, whichever comes first, instead of a bar
    log_every_steps: int = 100
    log_every_seconds: float = 60.0  # see log_every_steps


@dataclass(frozen=True)
class TrackingConfig:
    # where rank 0 sends the run's figures, several at once: any of tensorboard | mlflow | wandb; [] = none
    loggers: tuple[str, ...] = ("tensorboard",)
    every_steps: int = 50  # loss, lr and images/s every this many optimizer steps (a fixed step interval)
    upload_best: bool = False  # mlflow, wandb: best.pt as an artifact of the tracked run when training finishes
    mlflow_uri: Optional[str] = None  # null: $MLFLOW_TRACKING_URI, else MLflow's default; passwords: environment only
    mlflow_experiment: str = "fishnet-train"  # created if missing
    wandb_project: str = "fishnet-train"  # the W&B project the runs go to
    wandb_entity: Optional[str] = None  # null: the API key's default entity
    wandb_mode: str = "online"  # online | offline (offline: files under <run dir>/wandb for `wandb sync`)


@dataclass(frozen=True)
class TrainConfig:
    """``fishnet-train``: every key below. The groups (``model=``, ``data=``, ``optim=``, ``schedule=``) and the
    ``experiment=`` presets set several at once (see Groups and presets)."""

    # the run's name: its directory is outputs/train/<name> in every job and launcher, so the same command
    # submitted again resumes it (Clusters); null = named by the launcher (SLURM job, torchrun id) or the time
    name: Optional[str] = None
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


@dataclass(frozen=True)
class EvalOptions:
    # the test set: auto (recognised from data.root's layout) | val | real | imagenet-v2 | imagenet-a | imagenet-r |
    # imagenet-sketch (Evaluation)
    set: str = "auto"
    predictions: Optional[str] = None  # CSV path: one row per image, top-5 classes and probabilities
    # ImageNet-ReaL labels (real.json: 50,000 label lists in val-file order): adds real_top1 to eval.json;
    # eval.set=real without it takes the copy timm ships
    real_labels: Optional[str] = None
    # a file of class folder names (wnids), one per line: the 1000-way logits restricted to them (ImageNet-A/R)
    class_subset: Optional[str] = None
    tta: str = "none"  # none | flip: flip averages the logits of the image and its mirror (not the paper's protocol)
    # with tracking.loggers: same = add the results to the tracked run of the training run that wrote the
    # checkpoint | new = a tracked run of their own (always for released checkpoints)
    tracked_run: str = "same"


@dataclass(frozen=True)
class EvalConfig:
    """``fishnet-eval checkpoint=FILE data.root=DIR``: the published protocol. The model, and for this project's
    checkpoints the evaluation sizes, come from the checkpoint unless set here. Of the shared keys it reads
    ``data.*``, ``model=NAME`` (or ``model.name``), ``model.num_classes``, ``model.use_ema`` and
    ``trainer.device|devices|amp|channels_last|compile|seed|deterministic|host_allocator``; ``tracking.*`` sends its
    results to the training run's tracked run (none by default)."""

    checkpoint: str = MISSING  # this project's checkpoint or a released one
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name=None, num_classes=None))
    data: DataConfig = field(default_factory=lambda: DataConfig(batch_size=100, workers=4))
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalOptions = field(default_factory=EvalOptions)
    # loggers=[mlflow|wandb]: the results go to the tracked run the checkpoint names (eval.tracked_run) or a new one
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(loggers=()))


@dataclass(frozen=True)
class PredictOptions:
    topk: int = 5  # classes per image
    output: Optional[str] = None  # .csv or .jsonl: one row per image


# The apps that only read a model: data.root is not used (inputs= names the images); the data keys give
# the evaluation transform, by default the checkpoint's.
_NO_ROOT = "(unused)"


@dataclass(frozen=True)
class PredictConfig:
    """``fishnet-predict checkpoint=FILE inputs=IMAGES``: the top classes of each image, with the evaluation
    transform the checkpoint was trained with. Of the shared keys it reads ``model=NAME``, ``model.use_ema``,
    ``data.batch_size|workers`` and the evaluation sizes (``data.val_*``, ``data.mean|std``), and
    ``trainer.device|amp|channels_last``; ``data.root`` is not used."""

    checkpoint: str = MISSING  # this project's checkpoint or a released one
    inputs: str = MISSING  # an image, a folder (searched recursively) or a glob
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name=None, num_classes=None))
    data: DataConfig = field(default_factory=lambda: DataConfig(root=_NO_ROOT, batch_size=32, workers=2))
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    predict: PredictOptions = field(default_factory=PredictOptions)


@dataclass(frozen=True)
class ExportConfig:
    """``fishnet-export checkpoint=FILE format=FORMAT output=FILE``: the weights for publishing, or the network
    for other runtimes. Of the shared keys it reads ``model=NAME``, ``model.use_ema`` and the evaluation
    sizes (``data.val_*``); ``data.root`` is not used."""

    checkpoint: str = MISSING  # this project's checkpoint or a released one
    format: str = "safetensors"  # safetensors | onnx | torch_export
    output: str = MISSING  # the file to write: .safetensors | .onnx | .pt2
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
