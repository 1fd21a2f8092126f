"""What the launcher that started this process (torchrun, srun) says about it, from the environment.

Torch-free, so that the command-line apps can read it before importing torch.
"""
from __future__ import annotations

import os


def env_ranks() -> tuple[int, int, int] | None:
    """(rank, world, local rank) from torchrun's variables, else SLURM's, else None."""
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    if "SLURM_PROCID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"]), int(os.environ.get("SLURM_LOCALID", 0))
    return None
