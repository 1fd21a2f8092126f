"""A training run: ``train(options, run_dir)``, the loop and the state a restart needs (optimiser,
schedule, losses, EMA, checkpoints), and the evaluation pass it shares with ``fishnet-eval``."""
from .trainer import train

__all__ = ["train"]
