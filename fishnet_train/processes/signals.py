"""Preemption: SIGTERM, SIGUSR1 (SLURM's usual warning) or SIGUSR2 (submitit's) ask the run to stop
and save: after the current training step, within a batch of validation, or between pieces of the
work before training (staging, indexing, the scan). Ctrl-C (SIGINT) interrupts where it lands, as
Python's own handler does; one that Python dropped (raised in a finalizer) is raised again at the next
step or validation batch."""
from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any, Callable


PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: "try again later"; requeue on it
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class Preempted(Exception):
    """Raised after the checkpoint of a preempted run is written (before training: with nothing to write)."""


StopCheck = Callable[[], None]  # called between pieces of work; raises Preempted to end the work there


def no_stop() -> None:
    """The ``StopCheck`` of work that nothing stops."""


class StopRequest:
    """Records a stop signal; every rank reads it between pieces of work and all agree on it in their next
    collective (at each step ``guards.agree``), so that no rank waits in one for a rank that left."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.interrupted = False  # Ctrl-C came (SIGINT)
        self._previous: dict[int, Any] = {}  # what signal.signal returned: a handler, SIG_DFL or SIG_IGN

    def install(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where SIGINT is ignored
                self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._interrupt)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    def _interrupt(self, signum: int, frame: FrameType | None) -> None:
        self.interrupted = True
        raise KeyboardInterrupt

    def raise_if_interrupted(self) -> None:
        """KeyboardInterrupt again after a Ctrl-C that did not end the run: one raised while Python ran a
        finalizer (a ``__del__``, a generator closed by the collector) is printed and dropped."""
        if self.interrupted:
            raise KeyboardInterrupt

    def stopping(self) -> bool:
        """Whether a stop signal came, asked between pieces of work (a dropped Ctrl-C is raised here)."""
        self.raise_if_interrupted()
        return self.requested

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def raise_if_requested(self, doing: str) -> None:
        """``Preempted`` naming the signal and what it stopped (``doing``), once a signal came."""
        if self.signum is not None:
            raise Preempted(f"stopped by {signal.Signals(self.signum).name} while {doing}")

    def previous_handler(self) -> object:
        """The handler ours replaced for the received signal (submitit requeues through it)."""
        return self._previous.get(self.signum) if self.signum is not None else None
