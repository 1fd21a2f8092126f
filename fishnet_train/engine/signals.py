"""Preemption: SIGTERM/SIGUSR1 ask the run to stop after the current step and save."""
from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import torch

from .distributed import all_reduce_max

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: "try again later"; requeue on it
SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(Exception):
    """Raised after the checkpoint of a preempted run is written."""


class StopRequest:
    """Records a stop signal; every rank asks ``should_stop`` after each step and all agree."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}  # what signal.signal returned: a handler, SIG_DFL or SIG_IGN

    def install(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    def should_stop(self, device: torch.device) -> bool:
        flag = torch.tensor([1.0 if self.signum is not None else 0.0], device=device)
        return bool(all_reduce_max(flag).item())

    def previous_handler(self) -> object:
        """The handler ours replaced for the received signal (submitit requeues through it)."""
        return self._previous.get(self.signum) if self.signum is not None else None
