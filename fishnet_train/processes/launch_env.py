"""What the launcher that started this process (torchrun, srun) says about it, from the environment.

Torch-free, so that the command-line apps can read it before importing torch.
"""
from __future__ import annotations

import os
import re


def env_ranks() -> tuple[int, int, int] | None:
    """(rank, world, local rank) from torchrun's variables, else srun's, else None.

    Only ``srun`` sets ``SLURM_STEP_NUM_TASKS`` for its tasks: a batch shell of a job with
    ``--ntasks=8`` also has ``SLURM_NTASKS=8`` and ``SLURM_PROCID=0``, and a fishnet-train started
    there directly is one process, not rank 0 of 8 waiting for ranks that never come.
    """
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    tasks = int(os.environ.get("SLURM_STEP_NUM_TASKS", "1") or 1)
    if "SLURM_PROCID" in os.environ and tasks > 1:
        return int(os.environ["SLURM_PROCID"]), tasks, int(os.environ.get("SLURM_LOCALID", 0))
    return None


def expand_counts(spec: str) -> list[int]:
    """SLURM's per-node counts, ``"2(x3),1"`` -> ``[2, 2, 2, 1]``."""
    counts: list[int] = []
    for part in filter(None, spec.split(",")):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if match is None:
            return []
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    return counts


def local_processes() -> int:
    """How many processes of this job share this machine: torchrun's (and our launcher's)
    ``LOCAL_WORLD_SIZE``, else the tasks srun placed on this node, else 1."""
    if "LOCAL_WORLD_SIZE" in os.environ:
        return int(os.environ["LOCAL_WORLD_SIZE"])
    if env_ranks() is not None and "SLURM_STEP_TASKS_PER_NODE" in os.environ:
        counts = expand_counts(os.environ["SLURM_STEP_TASKS_PER_NODE"])
        node = int(os.environ.get("SLURM_NODEID", "0") or 0)
        if node < len(counts):
            return counts[node]
    return 1


def cpu_threads() -> int | None:
    """Intra-op threads for this process, or None to keep torch's choice (one process, no SLURM).

    A SLURM task gets its ``SLURM_CPUS_PER_TASK`` (torchrun's workers inside one share the
    task's cores instead); otherwise the cores this process may run on are shared evenly among
    this machine's processes of the job, so that srun and ``trainer.devices=N`` run the same
    number of threads, and so give the same float results.
    """
    per_task = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if per_task.isdigit() and "LOCAL_WORLD_SIZE" not in os.environ:
        return int(per_task)
    processes = local_processes()
    if processes <= 1:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // processes)
