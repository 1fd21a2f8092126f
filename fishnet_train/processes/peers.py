"""One failed process ends the whole job within seconds, with its own one-line message.

Without this, the other ranks of a job whose one rank raised (a user error on its shard of the
data, an exception, running out of memory) wait in their next collective until its 30-minute
timeout; srun, unlike torchrun, does not stop them unless ``--kill-on-bad-exit`` is given. The
failing rank writes its message and exit code into the process group's store; a thread in every
other rank polls for it and ends its process with the same code.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from typing import Any

from ..errors import USER_ERROR_EXIT_CODE, UserError, user_message
from .distributed import DistInfo, barrier

FAILED_KEY = "fishnet/failed"
SEEN_KEY = "fishnet/failed_seen"
POLL_SECONDS = 2.0
LINGER_SECONDS = 10.0  # how long a failed rank 0, whose process holds the store, waits for the others to read it


class PeerFailed(Exception):
    """Another rank failed first; its line is already printed by it, the exit code is its own."""

    def __init__(self, rank: int, code: int, message: str) -> None:
        super().__init__(f"rank {rank} failed: {message}")
        self.code = code


class PeerLost(PeerFailed):
    """A collective broke because another rank's process ended without publishing why (killed,
    crashed in C): it printed nothing, so this one says so in one line."""

    def __init__(self) -> None:
        Exception.__init__(self, "another rank's process ended without a message (killed? see its log and "
                                 "the launcher's); this rank stops too")
        self.code = 1


def lost_peer(error: BaseException) -> bool:
    """Whether ``error`` is a collective's report of a peer process that is gone."""
    gone = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")
    return isinstance(error, RuntimeError) and any(s in str(error) for s in gone)


def _read(store: Any) -> dict | None:
    if not store.check([FAILED_KEY]):
        return None
    return json.loads(store.get(FAILED_KEY))


def publish_failure(store: Any, rank: int, world_size: int, code: int, message: str) -> None:
    """Tell the other ranks that this one fails (unless one failed before it)."""
    payload = json.dumps({"rank": rank, "code": code, "message": message})
    try:
        if store.compare_set(FAILED_KEY, "", payload) == payload.encode():
            linger_if_host(store, rank, world_size)
    except Exception:  # the store is gone with its host: the others find out by themselves
        pass


def linger_if_host(store: Any, rank: int, world_size: int) -> None:
    """On rank 0, whose process may host the store, wait until every other rank has read the
    failure (or ``LINGER_SECONDS``): leaving at once would take the message with it."""
    if rank != 0:
        return
    deadline = time.monotonic() + LINGER_SECONDS
    with contextlib.suppress(Exception):
        while store.add(SEEN_KEY, 0) < world_size - 1 and time.monotonic() < deadline:
            time.sleep(0.1)


def _seen(store: Any, info: dict, rank: int, world_size: int) -> PeerFailed:
    """Count this rank among those that read another's failure; that failure."""
    with contextlib.suppress(Exception):
        store.add(SEEN_KEY, 1)
    linger_if_host(store, rank, world_size)
    return PeerFailed(info["rank"], info["code"], info["message"])


def failed_peer(store: Any, rank: int, world_size: int) -> PeerFailed | None:
    """The failure another rank published, if any (the reason, say, a collective just broke)."""
    try:
        info = _read(store)
    except Exception:
        return None
    if info is None or info["rank"] == rank:
        return None
    return _seen(store, info, rank, world_size)


class PeerWatch:
    """A daemon thread that ends this process once another rank has published its failure, or
    once rank 0, which hosts the store under srun, is gone (unless ``leaving``: at the end of a
    run rank 0 may leave first)."""

    def __init__(self, store: Any, rank: int, world_size: int) -> None:
        self.store, self.rank, self.world_size = store, rank, world_size
        self._stopped, self._leaving = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._watch, name="fishnet-peer-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stopped.wait(POLL_SECONDS):
            try:
                info = _read(self.store)
            except Exception:
                if not self._leaving.is_set():
                    self._end(1, "error: lost rank 0 (its process, which hosts the job's store, is gone); stopping")
                return
            if info is not None and info["rank"] != self.rank:
                failure = _seen(self.store, info, self.rank, self.world_size)
                self._end(failure.code, f"stopping: {failure}")
                return

    def _end(self, code: int, line: str) -> None:
        if self._stopped.is_set():
            return
        os.write(sys.stderr.fileno(), (line + "\n").encode())
        os._exit(code)  # the main thread may be blocked in a collective that would never return

    def leave(self) -> None:
        """From now on a vanished store is the end of the run, not a failure; a published failure still counts."""
        self._leaving.set()

    @property
    def running(self) -> bool:
        return not self._stopped.is_set()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()


def end_together(watch: PeerWatch | None) -> None:
    """Wait for every rank: none leaves before rank 0 has written last.pt. The watcher goes on
    through the wait, so that a rank 0 that fails to write still ends the others."""
    if watch is not None and watch.running:
        watch.leave()
        barrier()
        watch.stop()


def fail_together(info: DistInfo, error: Exception) -> None:
    """Another rank failed first (a collective broke because it left): raise its failure; else
    publish this rank's, so that the others stop within seconds."""
    first = failed_peer(info.store, info.rank, info.world_size)
    if first is not None:
        raise first from None
    if lost_peer(error):
        raise PeerLost() from None
    code = USER_ERROR_EXIT_CODE if isinstance(error, UserError) else 1
    message = user_message(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
    publish_failure(info.store, info.rank, info.world_size, code, message.splitlines()[0] if message else "")
