"""Every process-wide setting the apps make, in one place.

Each takes effect for the whole process (and the processes it forks), so the apps call these
once, at their start; each returns or logs what it set, so a run's log shows them. What they
gain is measured in docs/performance.md.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform
import random
import sys
from dataclasses import dataclass
from typing import TextIO

import torch
from tqdm import tqdm

from ..config import TrainerConfig
from .launch_env import cpu_threads

log = logging.getLogger("fishnet_train")

# mallopt() parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1  # mallopt takes an int


@dataclass(frozen=True)
class RuntimeSettings:
    """What a training or evaluation process sets for itself."""

    seed: int
    rank: int
    device: torch.device
    host_allocator: str  # keep_freed | system
    deterministic: bool = False
    cpu_threads: int | None = None  # intra-op threads (None: torch's choice), see launch_env.cpu_threads


def settings_for(trainer: TrainerConfig, rank: int, device: torch.device) -> RuntimeSettings:
    """A training or evaluation process's settings, from its ``trainer.*`` options."""
    return RuntimeSettings(trainer.seed, rank, device, trainer.host_allocator, trainer.deterministic,
                           cpu_threads=cpu_threads())


def configure_process(settings: RuntimeSettings) -> str:
    """Seeds, determinism, CPU threads, the host allocator and the GPU backend flags; returns
    one line describing them for the log."""
    s = settings
    random.seed(s.seed + s.rank)
    torch.manual_seed(s.seed + s.rank)
    if s.deterministic:
        # cuBLAS reads this when it creates its handle: deterministic matmuls need it set first.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(s.deterministic, warn_only=True)
    parts = [f"seed {s.seed}+rank", f"deterministic {str(s.deterministic).lower()}"]
    if s.cpu_threads is not None:
        # Processes sharing the CPU must share its cores too, or their threads fight.
        torch.set_num_threads(s.cpu_threads)
    if s.device.type == "cpu":
        kept = s.host_allocator == "keep_freed" and keep_freed_memory()
        parts += [f"{torch.get_num_threads()} CPU threads", f"host allocator {'keep_freed' if kept else 'system'}"]
    if s.device.type == "cuda":
        torch.backends.cudnn.benchmark = not s.deterministic
        torch.backends.cudnn.deterministic = s.deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        parts += [f"cudnn.benchmark {str(not s.deterministic).lower()}", "TF32 on"]
    return "runtime: " + ", ".join(parts)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Have glibc serve large blocks from its heap and never trim it, so that each CPU step
    reuses the pages the last one freed instead of mapping and zero-filling them again.

    Returns whether it took effect (False where the C library is not glibc; nothing changes
    then). It cannot be undone exactly: glibc's default thresholds adapt to what was freed.
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))


class _TqdmSafeHandler(logging.StreamHandler):
    """Writes through tqdm so that a line never tears an open progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # logging must never crash training
            self.handleError(record)


def setup_logging(log_file: str | None, console_stream: TextIO | None = None) -> None:
    """Console (plain lines, on stdout unless ``console_stream``) and, if given, a timestamped log file.

    The root logger's handlers are replaced, not added to: the apps call this again in each
    local worker process, and Hydra's own job logging is off (``hydra/job_logging: none``).
    The elastic launcher's loggers are muted: it reports a worker's failure as a traceback
    of its own, while the worker has already printed the one line that matters.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    console = _TqdmSafeHandler(console_stream or sys.stdout)
    console.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(console)
    if log_file:
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s"))
        root.addHandler(file_handler)
    root.setLevel(logging.INFO)
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
