"""Where rank 0 sends a run's figures: TensorBoard, MLflow and Weights & Biases, side by side on one step
axis, with one tracked run per training run however often its job is requeued, preempted or killed.

Nothing here imports torch or a tracker's package at import time: the config checks import ``checks``.
"""
from .checks import LOGGERS, check_tracking
from .trackers import Trackers, flat_parameters, open_trackers

__all__ = ["LOGGERS", "Trackers", "check_tracking", "flat_parameters", "open_trackers"]
