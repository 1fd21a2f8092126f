"""What a run is: the options a run keeps from its first job to its last (its recipe), and the optimiser's
rate as the run uses it. Torch-free, so that the command line is checked against the run directory
before Hydra starts the job (``cli/common.py``); the trainer checks again against the checkpoint."""
from __future__ import annotations

import dataclasses
from typing import Any

from .config import SQRT_SCALED_OPTIMIZERS, TrainConfig
from .errors import UserError

# What a run learns and how it is scored: a resubmission (trainer.resume=auto) must keep these. The rest
# may change between jobs: the processes, the loader, where the data lies and in which format, the logging.
RECIPE = ("model", "data", "optim", "schedule", "loss", "trainer.epochs", "trainer.seed", "trainer.max_steps_per_epoch")
MAY_CHANGE = ("model.pretrained", "model.use_ema", "model.grad_checkpointing", "data.root", "data.format",
              "data.workers", "data.eval_batch_size", "data.index_cache", "data.stage_dir", "data.scan",
              "data.bad_images", "data.train_decode", "data.region_decode")


def resolve_lr(options: TrainConfig) -> tuple[TrainConfig, str | None]:
    """The options with ``optim.lr`` scaled to the global batch and ``optim.lr_base_batch`` spent (so that
    config.yaml and the checkpoint hold the rate in use, and running them again scales nothing twice);
    a line saying what was scaled, if anything."""
    o, batch = options.optim, options.data.batch_size
    if o.lr_base_batch is None:
        return options, None
    lr = o.lr_for_batch(batch)
    rule = "square root" if o.name in SQRT_SCALED_OPTIMIZERS else "linear"
    note = f"optim.lr {o.lr:g} for a batch of {o.lr_base_batch} is {lr:g} for the global batch of {batch} ({rule})"
    return dataclasses.replace(options, optim=dataclasses.replace(o, lr=lr, lr_base_batch=None)), note


def check_same_recipe(saved: Any, now: dict[str, Any], run_dir: str) -> None:
    """The first recipe key whose value the command changes, refused in one line."""
    before, after = flat(saved if isinstance(saved, dict) else {}), flat(now)
    for key, value in after.items():
        if under(key, RECIPE) and not under(key, MAY_CHANGE) and key in before and before[key] != value:
            raise UserError(f"{run_dir} was started with {key}={fmt(before[key])}, this command has "
                            f"{key}={fmt(value)}: a resubmitted run keeps its recipe; set {key}={fmt(before[key])}, "
                            f"or change it deliberately with trainer.resume={run_dir}/checkpoints/last.pt")


def flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}``; lists and tuples compare alike."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def fmt(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)
