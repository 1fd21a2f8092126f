"""Loader worker processes: how they start (forked), what they leave to the training process (stop
signals), and how they end."""
from __future__ import annotations

import contextlib
import gc
import multiprocessing
import signal
from multiprocessing import util as multiprocessing_util
from typing import Any, Iterator

from torch.utils.data import DataLoader

from ..processes.signals import STOP_SIGNALS
from ..processes.start_methods import forking_context


def freeze_for_fork() -> None:
    """Move every object alive now out of reach of the cyclic garbage collector before workers fork.

    A full collection in a forked worker writes to the header of every object it inherited, so
    the kernel copies each page holding one: about 80 MB per worker, all at once after some
    220,000 items (measured, docs/data.md). Frozen objects are still freed by reference
    counting; only cycles among them are never collected (CPython's advice for pre-fork servers).
    """
    gc.collect()
    gc.freeze()


def leave_stopping_to_the_main_process(worker_id: int) -> None:
    """A loader worker ignores the stop signals. SLURM signals every process of a job (scancel, time
    limits, preemption), as does a signal to the process group: a worker that died of it would fail the
    step the training process is finishing before it saves. Workers still end when the loader shuts
    them down, when their parent dies (torch's watchdog), or at its exit (``end_loader_workers``).
    The signals were held since the fork (``stop_signals_held``): one sent meanwhile is dropped here."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@contextlib.contextmanager
def stop_signals_held() -> Iterator[None]:
    """Hold (block) the stop signals in this thread while it forks loader workers, which inherit the
    block until ``leave_stopping_to_the_main_process`` ignores them: a worker's first act is to install
    torch's SIGTERM handler, which ends it, so a signal to the whole job in between would kill it
    (and fail the loader). Held signals reach this process when the block ends."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def end_loader_workers() -> None:
    """At exit, kill the loader workers still alive: multiprocessing would end them with SIGTERM, which
    they ignore, and then wait for them for ever (a loader frozen out of the collector is never freed).
    torch's SIGCHLD handler goes first: it would report each of these deaths as a worker failure."""
    workers = [child for child in multiprocessing.active_children() if child.daemon]
    if workers:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for worker in workers:
        worker.kill()


class ForkingLoader(DataLoader):
    """A DataLoader whose workers are forked (``processes.start_methods.forking_context``), whatever
    Python's default start method, and which freezes the collector's objects whenever it may fork
    them: at each iterator, so that everything built before the first one (model, optimizer,
    checkpoint) is frozen. With ``ignore_stop_signals`` its workers leave them to this process."""

    freeze_collector = True  # tools/benchmarks/bench_index.py turns it off to measure what it saves

    def __init__(self, *args: Any, ignore_stop_signals: bool = False, **kwargs: Any) -> None:
        if kwargs.get("num_workers", 0) > 0:
            kwargs.setdefault("multiprocessing_context", forking_context())
        if ignore_stop_signals:
            kwargs["worker_init_fn"] = leave_stopping_to_the_main_process
        super().__init__(*args, **kwargs)
        self.ignore_stop_signals = ignore_stop_signals

    def __iter__(self):
        if self.num_workers == 0:
            return super().__iter__()
        if not hasattr(self, "_workers_ended_at_exit"):
            # A finalizer of multiprocessing's own runs first within its exit handler, in the main process
            # (at exit) and in a process multiprocessing started (a rank under the local launcher), which
            # runs that handler itself, before any atexit function.
            self._workers_ended_at_exit = multiprocessing_util.Finalize(None, end_loader_workers, exitpriority=100)
        if self.freeze_collector:
            freeze_for_fork()
        with stop_signals_held() if self.ignore_stop_signals else contextlib.nullcontext():
            return super().__iter__()
