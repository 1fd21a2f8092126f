"""What the config fuzzer expects of a drawn config, written from the schema and the documented rules
(fishnet_train/config.py's comments, docs/), not by calling the checks it judges.

Each drawn value is either valid on its own (set alone on the fuzzer's base run, it trains or evaluates)
or not. A draw with a value invalid on its own must be refused, naming a drawn key; a draw whose values
are all valid on their own must run, unless two of its keys are a known interaction (INTERACTIONS), and
then a refusal names the keys the interaction says.
"""
from __future__ import annotations

import math
import re
import typing
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from hydra.core.override_parser.overrides_parser import OverridesParser

# The fuzzer's base runs (test_config_fuzz.BASE on its data), in the numbers the rules depend on.
CLASSES, TRAIN_IMAGES = 3, 12  # 3 classes of 4 training images
BATCH = 6  # data.batch_size of the training base (tests/helpers.TINY_TRAIN)
EVAL_BATCH = 100  # the eval schema's data.batch_size
EPOCHS = 1
LR = 0.002
CROP = 32  # the demo's train_crop, val_resize and val_crop; the checkpoint's too
ARCH = "fishnet99"  # the demo's model, and so the checkpoint's
MIN_SIZE, MAX_SIZE = 32, 8192  # the models' smallest input; the largest size the docs allow
MAX_BATCH = 1 << 20
MAX_SEED = 2**63 - 1

Rule = Callable[[Any], bool]


# --- the values as the schema types them (Hydra's grammar, then OmegaConf's conversions) ----------------

class WrongType(Exception):
    pass


def typed(value: Any, hint: Any) -> Any:
    """``value`` (as Hydra parsed it) converted to the schema type ``hint``; WrongType if it has none."""
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    if value is None:
        raise WrongType("null for a key that cannot be null")
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, list):
            raise WrongType(f"{value!r} is not a list")
        return tuple(typed(v, typing.get_args(hint)[0]) for v in value)
    if isinstance(value, (list, dict)):
        raise WrongType(f"{value!r} for a {hint.__name__}")
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        return str(value)
    raise WrongType(f"{value!r} is not a {hint.__name__}")


_PARSER = OverridesParser.create()


def parsed(value: str) -> Any:
    if value.startswith("<"):  # a fixture's path, still as its placeholder
        return value
    return _PARSER.parse_override(f"key={value}").value()


# --- rules: whether a typed value is valid on its own -----------------------------------------------------

def anything(value: Any) -> bool:
    return True


def one_of(*choices: Any) -> Rule:
    return lambda v: v in choices


def interval(low: float = -math.inf, high: float = math.inf, low_open: bool = False, high_open: bool = False,
             optional: bool = False) -> Rule:
    def rule(v: Any) -> bool:
        if v is None:
            return optional
        return (math.isfinite(v) and (low < v if low_open else low <= v) and (v < high if high_open else v <= high))
    return rule


def pair(high: float = math.inf) -> Rule:
    return lambda v: len(v) == 2 and all(map(math.isfinite, v)) and 0 < v[0] <= v[1] <= high


def channels(positive: bool) -> Rule:
    return lambda v: len(v) == 3 and all(math.isfinite(c) and (c > 0 or not positive) for c in v)


def divides(total: int, low: int = 1) -> Rule:
    """A positive integer that splits ``total`` into parts of at least ``low``."""
    return lambda v: v > 0 and total % v == 0 and total // v >= low


CUDA = torch.cuda.is_available()
POSITIVE = interval(0, low_open=True)
ZERO_OR_MORE = interval(0)
SIZE = interval(MIN_SIZE, MAX_SIZE)
MODELS = ("fishnet99", "fishnet150", "fishnet201")
DEVICES = ("auto", "cpu", "cuda") if CUDA else ("auto", "cpu")

# Valid in both apps: the checks every app runs on the keys it shares, where they do not depend on the base.
SHARED_RULES: dict[str, Rule] = {
    "model.drop_rate": interval(0, 1, high_open=True),
    "model.grad_checkpointing": anything,
    "model.classifier_init": one_of("auto", "released", "zeros"),
    "model.freeze_backbone": anything,
    "model.zero_init_residual": anything,
    "model.ema_decay": interval(0, 1, low_open=True, high_open=True, optional=True),
    "model.ema_every_steps": POSITIVE,
    "data.root": one_of("<data>"),
    "data.eval_batch_size": interval(1, MAX_BATCH, optional=True),
    "data.workers": ZERO_OR_MORE,
    "data.train_crop": SIZE,
    "data.crop_scale": pair(high=1),
    "data.crop_ratio": pair(),
    "data.hflip": anything,
    "data.lighting": ZERO_OR_MORE,
    "data.mean": channels(positive=False),
    "data.std": channels(positive=True),
    "data.bad_images": one_of("skip", "error"),
    "data.scan": anything,
    "data.format": one_of("folder", "shards"),  # the fuzzer's data holds both
    "data.stage_dir": one_of(None),  # a folder needs data.format=shards (an interaction)
    "data.train_decode": one_of("fast", "reduced", "exact"),
    "data.region_decode": anything,
    "data.auto_augment": one_of(None, "ra", "ta_wide", "aa"),
    "data.ra_magnitude": interval(0, 30),
    "data.random_erase": interval(0, 1),
    "data.mixup_alpha": ZERO_OR_MORE,
    "data.cutmix_alpha": ZERO_OR_MORE,
    "trainer.epochs": POSITIVE,
    "trainer.device": one_of(*DEVICES),
    "trainer.devices": lambda v: v == "auto" or (v.isdigit() and int(v) > 0),
    "trainer.amp": one_of("none", "bf16", "fp16"),
    "trainer.channels_last": anything,
    "trainer.compile": anything,
    "trainer.seed": interval(0, MAX_SEED),
    "trainer.deterministic": anything,
    "trainer.clip_grad_norm": interval(0, low_open=True, optional=True),
    "trainer.sync_bn": anything,
    "trainer.checkpoint_every_steps": ZERO_OR_MORE,
    "trainer.keep_epochs": ZERO_OR_MORE,
    "trainer.nan_policy": one_of("stop", "skip"),
    "trainer.eval_every": POSITIVE,
    "trainer.max_steps_per_epoch": interval(1, optional=True),
    "trainer.host_allocator": one_of("keep_freed", "system"),
    "trainer.log_every_steps": POSITIVE,
    "trainer.log_every_seconds": POSITIVE,
    # The fuzzer draws TensorBoard alone (MLflow and W&B have their own tests): no logger twice, none unknown.
    "tracking.loggers": lambda v: len(set(v)) == len(v) and set(v) <= {"tensorboard"},
    "tracking.every_steps": interval(1),
    "tracking.upload_best": anything,
    "tracking.mlflow_uri": lambda v: v is None or "@" not in v,  # a password in it is refused
    "tracking.mlflow_experiment": lambda v: bool(v.strip()),
    "tracking.wandb_project": lambda v: bool(v.strip()),
    "tracking.wandb_entity": anything,
    "tracking.wandb_mode": one_of("online", "offline"),
}

# fishnet-train on the base run: a FishNet-99, batch 6 of 12 images at 32 px, a one-epoch cosine schedule
# at lr 0.002 with one epoch of warmup.
TRAIN_RULES: dict[str, Rule] = {
    **SHARED_RULES,
    "model.name": one_of(*MODELS),
    "model.num_classes": one_of(None, CLASSES),  # the data's
    "model.pretrained": one_of(None, "<checkpoint>"),
    "model.use_ema": anything,  # read only with model.pretrained
    # BatchNorm needs two values per channel at the 1x1 deepest features of a 32 px crop; one batch at least
    "data.batch_size": interval(2, TRAIN_IMAGES),
    "data.val_resize": interval(CROP, MAX_SIZE),  # not below val_crop
    "data.val_crop": interval(MIN_SIZE, CROP),  # not above val_resize
    "data.index_cache": one_of("auto", None, "<index_cache>"),
    "data.repeated_aug": divides(BATCH),
    "data.progressive_min_crop": one_of(None),  # the base ramp [0, 0] is empty
    "data.progressive_epochs": anything,  # read only with a progressive_min_crop
    "optim.name": one_of("sgd", "adamw", "lamb", "lars"),
    "optim.lr": ZERO_OR_MORE,  # at least schedule.min_lr (0)
    "optim.momentum": interval(0, 1, high_open=True),
    "optim.nesterov": anything,  # the base has momentum
    "optim.weight_decay": ZERO_OR_MORE,
    "optim.decay_norm_and_bias": anything,
    "optim.backbone_lr_scale": ZERO_OR_MORE,
    "optim.betas": lambda v: len(v) == 2 and all(interval(0, 1, high_open=True)(b) for b in v),
    "optim.eps": interval(0, low_open=True, optional=True),
    "optim.trust_coefficient": POSITIVE,
    "optim.max_grad_norm": interval(0, low_open=True, optional=True),
    "optim.lr_base_batch": interval(1, optional=True),
    "schedule.name": one_of("step", "cosine"),  # the base's milestones are [] for step
    # refused for any schedule where no schedule may take them; the step one also needs them within the run
    "schedule.milestones": lambda v: all(m > 0 for m in v) and list(v) == sorted(set(v)),
    "schedule.gamma": interval(0, 1, low_open=True),
    "name": lambda v: v is None or re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", v) is not None,
    "schedule.warmup_epochs": interval(0, EPOCHS),
    "schedule.warmup_start_factor": interval(0, 1, low_open=True),
    "schedule.min_lr": interval(0, LR),
    "loss.name": one_of("ce", "bce"),
    "loss.label_smoothing": interval(0, 1, high_open=True),
    "loss.bce_target_thresh": one_of(None),  # bce only
    "trainer.accum_steps": divides(BATCH, low=2),  # the micro-batch too needs two values per channel
    "trainer.resume": one_of("auto", None, "<checkpoint>"),
    "trainer.best_by": one_of("top1"),  # ema_top1 needs model.ema_decay
}

# fishnet-eval of the base run's checkpoint. It reads the model, data and device keys; it checks the
# others it shares with training as training does, and ignores the rest (model.pretrained, trainer.resume,
# data.index_cache, the progressive crop, trainer.best_by).
EVAL_RULES: dict[str, Rule] = {
    **SHARED_RULES,
    "checkpoint": one_of("<checkpoint>"),
    "model.name": one_of(None, ARCH),  # null: the checkpoint's
    "model.num_classes": one_of(None, CLASSES),
    "model.pretrained": anything,
    "model.use_ema": one_of(False),  # the checkpoint has no EMA weights
    "data.batch_size": interval(1, MAX_BATCH),
    "data.val_resize": SIZE,  # the checkpoint's val_crop is the smallest size
    "data.val_crop": interval(MIN_SIZE, CROP),  # not above the checkpoint's val_resize
    "data.index_cache": anything,
    "data.repeated_aug": divides(EVAL_BATCH),
    "data.progressive_min_crop": anything,
    "data.progressive_epochs": anything,
    "trainer.accum_steps": POSITIVE,
    "trainer.resume": anything,
    "trainer.best_by": anything,
    "eval.predictions": one_of(None, "<out>/predictions.csv"),
    "eval.real_labels": one_of(None),  # ReaL labels need ImageNet's 1000 val classes
    "eval.class_subset": one_of(None, "<class_subset>"),
    "eval.tta": one_of("none", "flip"),
    "eval.set": one_of("auto", "val"),  # the fixture is a val/ folder of other classes than ImageNet's
    "eval.tracked_run": one_of("same", "new"),
}


@dataclass(frozen=True)
class Interaction:
    """Two keys whose values are checked together: together they may make a value invalid on its own
    valid, or refuse values valid on their own; a refusal for it names ``named``."""

    keys: tuple[str, str]
    named: tuple[str, ...]


def both(a: str, b: str) -> Interaction:
    return Interaction((a, b), (a, b))


def blaming(key: str, other: str) -> Interaction:
    """An interaction whose refusal names ``key`` (the value refused), not necessarily ``other``."""
    return Interaction((key, other), (key,))


INTERACTIONS: tuple[Interaction, ...] = (
    both("data.val_crop", "data.val_resize"),
    both("data.progressive_min_crop", "data.train_crop"),
    both("data.progressive_min_crop", "data.progressive_epochs"),
    both("data.progressive_epochs", "trainer.epochs"),
    both("data.batch_size", "data.repeated_aug"),
    both("data.batch_size", "trainer.accum_steps"),
    both("data.batch_size", "data.train_crop"),  # BatchNorm's two values per channel
    both("trainer.accum_steps", "data.train_crop"),
    both("data.stage_dir", "data.format"),
    blaming("data.index_cache", "data.format"),  # shards have no folder index to cache
    both("optim.nesterov", "optim.momentum"),
    blaming("schedule.min_lr", "optim.lr"),  # the floor is within the rate in use
    blaming("schedule.min_lr", "optim.lr_base_batch"),
    blaming("schedule.min_lr", "schedule.name"),  # step has no floor
    blaming("schedule.milestones", "schedule.name"),  # cosine has no milestones
    both("schedule.warmup_epochs", "trainer.epochs"),
    both("loss.bce_target_thresh", "loss.name"),
    both("trainer.best_by", "model.ema_decay"),
    both("eval.real_labels", "eval.class_subset"),
    both("eval.set", "eval.class_subset"),
    both("eval.set", "eval.real_labels"),
    blaming("eval.set", "data.format"),  # shards hold ImageNet val only
    # checked at the job's start, against the checkpoint's contents
    blaming("model.pretrained", "model.name"),  # another model's weights
    both("model.pretrained", "model.use_ema"),  # the checkpoint has no EMA weights
    blaming("trainer.resume", "model.name"),
    both("trainer.resume", "optim.name"),  # another optimizer's state
    both("trainer.resume", "optim.backbone_lr_scale"),  # other parameter groups
    both("trainer.resume", "optim.decay_norm_and_bias"),
    both("trainer.resume", "model.freeze_backbone"),
)


# --- the expectation of a draw, and the judgement of its outcome ----------------------------------------

@dataclass(frozen=True)
class Expectation:
    invalid: frozenset[str]  # the drawn keys whose values are invalid on their own
    interacting: tuple[Interaction, ...]  # the known interactions among the drawn keys

    @property
    def must_refuse(self) -> bool:
        """A value invalid on its own that no drawn interaction can make valid."""
        return any(all(key not in i.keys for i in self.interacting) for key in self.invalid)

    @property
    def may_refuse(self) -> bool:
        return bool(self.invalid or self.interacting)

    def blames_rightly(self, message: str) -> bool:
        """The message names a key whose value is invalid on its own, or what a drawn interaction names."""
        return (any(names(message, key) for key in self.invalid)
                or any(all(names(message, key) for key in i.named) for i in self.interacting))


def names(message: str, key: str) -> bool:
    """Whether ``message`` names ``key`` (``optim.lr`` is not named by ``optim.lr_base_batch``)."""
    return re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", message) is not None


def expect(draw: Mapping[str, str], hints: Mapping[str, Any], rules: Mapping[str, Rule],
           interactions: Sequence[Interaction] = INTERACTIONS) -> Expectation:
    """``draw``: key -> value as on the command line, with its fixture placeholders (``<checkpoint>``)."""
    return Expectation(frozenset(k for k, v in draw.items() if not valid_alone(v, hints[k], rules[k])),
                       tuple(i for i in interactions if set(i.keys) <= set(draw)))


def valid_alone(value: str, hint: Any, rule: Rule) -> bool:
    try:
        return bool(rule(typed(parsed(value), hint)))
    except WrongType:
        return False


def judge_refusal(e: Expectation, draw: Mapping[str, str], message: str) -> None:
    assert e.may_refuse, f"{dict(draw)}: values valid on their own were refused: {message}"
    blamable = sorted(e.invalid) + [" and ".join(i.named) for i in e.interacting]
    assert e.blames_rightly(message), f"{dict(draw)}: the refusal names none of {blamable}: {message}"


def judge_acceptance(e: Expectation, draw: Mapping[str, str]) -> None:
    assert not e.must_refuse, f"{dict(draw)}: accepted, but {sorted(e.invalid)} are invalid on their own"
