"""One run per directory: a kernel-held file lock, never stale."""
import os
import signal
import subprocess
import sys
import time

import pytest

from fishnet_train.processes.run_lock import LOCK_FILE, RunDirInUse, RunDirLock

_HOLD = """
import sys, time
from fishnet_train.processes.run_lock import RunDirLock
lock = RunDirLock(sys.argv[1])
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold(run_dir, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(run_dir), str(seconds)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_refused_naming_the_holder(tmp_path):
    holder = hold(tmp_path, 30)
    try:
        with pytest.raises(RunDirInUse, match=rf"{tmp_path} is in use by pid {holder.pid} on \S+, started \S+;"):
            RunDirLock(str(tmp_path))
    finally:
        holder.kill()
        holder.wait()


def test_a_sigkilled_holder_leaves_no_stale_lock(tmp_path):
    holder = hold(tmp_path, 30)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / LOCK_FILE).exists()  # the file stays; the lock died with its process
    lock = RunDirLock(str(tmp_path))
    assert f'"pid": {os.getpid()}' in (tmp_path / LOCK_FILE).read_text()
    lock.release()


def test_a_restarted_job_waits_for_its_previous_incarnation(tmp_path):
    holder = hold(tmp_path, 1.0)
    started = time.monotonic()
    lock = RunDirLock(str(tmp_path), wait_seconds=20, poll_seconds=0.1)
    assert time.monotonic() - started < 15
    lock.release()
    holder.wait()


def test_release_lets_the_next_run_take_the_directory(tmp_path):
    RunDirLock(str(tmp_path)).release()
    RunDirLock(str(tmp_path)).release()


def test_forked_children_do_not_keep_the_lock_after_the_holder_dies(tmp_path):
    # As a DataLoader worker would: the holder forks a child that outlives it.
    # The child says it runs (its at-fork hooks done) before the holder is killed: a holder does not die
    # within microseconds of forking, and killing it then would race the child's start.
    script = _HOLD.replace('print("held", flush=True)', 'import os\nif os.fork() == 0:\n'
                           '    print("child", flush=True)\n    time.sleep(30)\nprint("held", flush=True)')
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path), "30"], stdout=subprocess.PIPE, text=True)
    assert {proc.stdout.readline().strip(), proc.stdout.readline().strip()} == {"child", "held"}
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    RunDirLock(str(tmp_path)).release()  # the orphaned child is still alive, yet the lock is free


def test_a_refused_lock_leaves_the_descriptors_of_forked_children_alone(tmp_path):
    holder = hold(tmp_path, 30)
    try:
        with pytest.raises(RunDirInUse):
            RunDirLock(str(tmp_path))
        out = os.open(tmp_path / "result", os.O_WRONLY | os.O_CREAT)  # takes the refused lock's number
        pid = os.fork()
        if pid == 0:  # the child, as a DataLoader worker, writes its result
            try:
                os.write(out, b"x")
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        os.close(out)
        assert (tmp_path / "result").read_bytes() == b"x"  # its at-fork hook left the descriptor open
    finally:
        holder.kill()
        holder.wait()
