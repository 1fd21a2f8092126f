"""The tracking options' checks, run with the other config checks before anything starts."""
from __future__ import annotations

import importlib.util
from urllib.parse import urlsplit

from ..config import TrackingConfig
from ..errors import UserError

LOGGERS = ("tensorboard", "mlflow", "wandb")
# The optional trackers: the module each needs, which is also the name of the project's extra for it.
OPTIONAL = {"mlflow": "mlflow", "wandb": "wandb"}


def check_tracking(t: TrackingConfig) -> None:
    for name in t.loggers:
        if name not in LOGGERS:
            raise UserError(f"tracking.loggers: {name!r} is not one of {', '.join(LOGGERS)}")
    if len(set(t.loggers)) != len(t.loggers):
        raise UserError(f"tracking.loggers={list(t.loggers)} names a logger twice; name each once")
    if t.every_steps < 1:
        raise UserError(f"tracking.every_steps must be a positive number of steps, got {t.every_steps}")
    if t.wandb_mode not in ("online", "offline"):
        raise UserError(f"tracking.wandb_mode={t.wandb_mode!r} is not one of online, offline")
    names = (("tracking.mlflow_experiment", t.mlflow_experiment), ("tracking.wandb_project", t.wandb_project))
    for key, value in names:
        if not value.strip():
            raise UserError(f"{key} must not be empty")
    if t.mlflow_uri and _has_password(t.mlflow_uri):
        raise UserError("tracking.mlflow_uri holds a password, which would be written into the run directory: set "
                        "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or the whole MLFLOW_TRACKING_URI) in "
                        "the environment instead")
    for name in t.loggers:
        module = OPTIONAL.get(name)
        if module is not None and importlib.util.find_spec(module) is None:
            raise UserError(f"tracking.loggers includes {name}, which is not installed: pip install {module} (the "
                            f"project's [{module}] extra), or leave {name} out of tracking.loggers")


def _has_password(uri: str) -> bool:
    try:
        return urlsplit(uri).password is not None
    except ValueError:  # a malformed port: MLflow refuses it itself
        return False
