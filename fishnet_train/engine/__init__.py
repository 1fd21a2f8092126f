"""Training and evaluation engine: loop, evaluation, checkpoints, distributed helpers."""
