"""Preemption: SIGTERM, SIGUSR1 (SLURM's usual warning) or SIGUSR2 (submitit's) ask the run to stop
after the current step and save."""
from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any


PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: "try again later"; requeue on it
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class Preempted(Exception):
    """Raised after the checkpoint of a preempted run is written."""


class StopRequest:
    """Records a stop signal; every rank reads ``signum`` at each step and all agree (``guards.agree``)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}  # what signal.signal returned: a handler, SIG_DFL or SIG_IGN

    def install(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    def previous_handler(self) -> object:
        """The handler ours replaced for the received signal (submitit requeues through it)."""
        return self._previous.get(self.signum) if self.signum is not None else None
