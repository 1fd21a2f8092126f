"""One run per directory: an OS file lock that the kernel releases when its process ends.

A second process on a locked run directory stops at once with the holder's host, pid and start
time; a SIGKILLed holder leaves no stale lock, since the lock dies with its process.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from datetime import datetime

from ..errors import UserError

LOCK_FILE = ".run.lock"


class RunDirInUse(UserError):
    """Another live process is running in this run directory."""


class RunDirLock:
    """The held lock of ``run_dir``; ``release`` (or the process's end) frees it."""

    def __init__(self, run_dir: str, wait_seconds: float = 0.0, poll_seconds: float = 0.5) -> None:
        self.path = os.path.join(run_dir, LOCK_FILE)
        try:
            os.makedirs(run_dir, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(f"cannot create the run directory {run_dir}: {e.strerror}; choose another "
                            "(hydra.run.dir=...)") from None
        # Forked children (DataLoader workers) would share the lock and hold it after this
        # process dies; they close their copy, which leaves this process's lock in place.
        os.register_at_fork(after_in_child=self._close_in_child)
        deadline = time.monotonic() + wait_seconds
        while not self._try_lock():
            if time.monotonic() >= deadline:
                holder = self._holder()
                self.release()  # and forget the number: the at-fork hook must not close its next owner
                raise RunDirInUse(
                    f"{run_dir} is in use by {holder}; wait for that run to end, stop it, or choose another "
                    "run directory (hydra.run.dir=...)"
                )
            time.sleep(poll_seconds)
        self._write_holder()

    def _try_lock(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as e:  # a filesystem without flock (some network mounts): run unguarded
            print(f"warning: cannot lock {self.path} ({e.strerror}); a second run there would not be refused",
                  file=sys.stderr)
        return True

    def _close_in_child(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _holder(self) -> str:
        try:
            with open(self.path) as f:
                info = json.load(f)
            return f"pid {info['pid']} on {info['host']}, started {info['started']}"
        except (OSError, ValueError, KeyError):
            return "another process"

    def _write_holder(self) -> None:
        started = datetime.now().isoformat(timespec="seconds")
        info = {"host": socket.gethostname(), "pid": os.getpid(), "started": started}
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps(info).encode(), 0)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor drops the lock
            self.fd = -1


def restart_wait_seconds() -> float:
    """How long a restarted job waits for its previous incarnation to let go of the directory:
    SLURM requeues and torchrun restarts can start it while the old process still saves."""
    restarted = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0
    restarted = restarted or int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0
    return 120.0 if restarted else 0.0
