"""``fishnet-prepare``: ImageNet as downloaded (the official tars or Kaggle's folders) into a ``data.root``:
tar shards (``data.format=shards``) or class folders (``data.format=folder``), streamed from the
download without extracting it, in parallel, resumable; optionally each train JPEG with a restart marker
after every MCU, as ``tools/add_restart_markers.py`` rewrites it, so that training decodes only its crop."""
from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import os
import signal
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Callable, Iterator

from tqdm import tqdm

from ...data.decoding.jpeg_region import region_decoder_notice
from ...errors import UserError
from ...processes.start_methods import forking_context
from .plan import Shard, plan_shards
from .sources import SourceSplit, find_source
from .writers import Task, clean_folders, clean_shards, make_task, peak_rss_mb, run_task, shard_done, write_index

FULL_IMAGENET = (1_281_167, 50_000, 1_000)  # train images, val images, classes
FORMATS = ("shards", "folder")


@dataclass(frozen=True)
class Summary:
    files: int  # written by this run
    bytes: int
    done_before: int  # files an earlier run had written
    seconds: float
    start_rss_mb: float  # this process before preparing: the imports (torch's mostly)
    peak_rss_mb: float  # this process
    worker_rss_mb: float  # the largest worker process, 0 without

    def line(self) -> str:
        mb, seconds = self.bytes / 1e6, max(self.seconds, 1e-9)
        workers = f"largest worker {self.worker_rss_mb:,.0f} MB" if self.worker_rss_mb else "no worker processes"
        return (f"prepared {self.files:,} files ({mb:,.1f} MB) in {self.seconds:.1f} s: {self.files / seconds:,.0f} "
                f"files/s, {mb / seconds:,.1f} MB/s; peak RSS {self.peak_rss_mb:,.0f} MB ({self.start_rss_mb:,.0f} MB "
                f"before preparing), {workers}; {self.done_before:,} files were done by an earlier run")


def default_workers() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def prepare(src: str, dst: str, fmt: str = "shards", workers: int | None = None, shard_mb: int = 256,
            subset: bool = False, out: Callable[[str], None] = print, restart_markers: bool = False) -> Summary:
    """Write ImageNet found under ``src`` into ``dst`` in the format ``fmt`` (``restart_markers``: the train
    JPEGs rewritten with a marker after every MCU); every problem is a UserError."""
    if fmt not in FORMATS or shard_mb < 1 or workers is not None and workers < 1:
        raise UserError(f"format {fmt!r}, shard size {shard_mb} MiB, workers {workers}: expected a format of "
                        f"{FORMATS}, at least 1 MiB and at least 1 worker")
    if restart_markers:
        check_markers_possible(fmt)
    start, start_rss = time.perf_counter(), peak_rss_mb()
    _check_writable(dst)
    with ExitStack() as stack:
        pool = None
        if (workers or default_workers()) > 1:
            pool = stack.enter_context(
                forking_context().Pool(workers or default_workers(), initializer=_die_with_parent))
        layout, train, val = find_source(src, pool.imap if pool else map)
        _check_counts(src, layout, train, val, subset, out)
        plans = [plan_shards(split, shard_mb << 20) for split in (train, val)]
        if restart_markers:
            plans[0] = [with_markers_planned(shard) for shard in plans[0]]
        todo, done_before = _resume(dst, fmt, (train, val), plans)
        tasks: Iterator[Task] = (make_task(dst, split, shard, fmt == "folder", restart_markers and split is train)
                                 for split, shard in todo)
        files = written = 0
        worker_rss = 0.0
        with tqdm(total=len(train) + len(val), initial=done_before, unit="files", disable=None) as bar:
            for samples, task_files, task_bytes, rss in (pool.imap_unordered(run_task, tasks) if pool
                                                         else map(run_task, tasks)):
                files, written, worker_rss = files + task_files, written + task_bytes, max(worker_rss, rss)
                done_before += samples - task_files  # folders: files an earlier run wrote
                bar.update(samples)
        if fmt == "shards":
            for split, shards in zip((train, val), plans):
                write_index(dst, split, shards)
    return Summary(files, written, done_before, time.perf_counter() - start, start_rss, peak_rss_mb(),
                   worker_rss if pool else 0.0)


def check_markers_possible(fmt: str) -> None:
    if fmt != "shards":
        raise UserError("--restart-markers writes shards; for class folders, prepare them, then run "
                        "`python tools/add_restart_markers.py DST/train DST/train`")
    notice = region_decoder_notice()
    if notice is not None:
        raise UserError(f"--restart-markers needs the region decoder: {notice}")


def with_markers_planned(shard: Shard) -> Shard:
    """The same members, rewritten: the sizes are known once written, and an earlier run's plain shard (or a
    marked one in a plain run) is not taken for this one."""
    fingerprint = hashlib.sha256(f"{shard.fingerprint}+restart-markers".encode()).hexdigest()
    return dataclasses.replace(shard, file_size=-1, fingerprint=fingerprint)


def _resume(dst: str, fmt: str, splits: tuple[SourceSplit, ...],
            plans: list[list[Shard]]) -> tuple[list[tuple[SourceSplit, Shard]], int]:
    """What is left of an earlier run's output cleaned: the shards (or runs of files) still to write, and
    the files of the shards already done."""
    todo, done = [], 0
    for split, shards in zip(splits, plans):
        if fmt == "shards":
            clean_shards(dst, split.name, shards)
        else:
            clean_folders(dst, split)
        for shard in shards:
            if fmt == "shards" and shard_done(dst, shard):
                done += shard.end - shard.start
            else:
                todo.append((split, shard))
    return todo, done


def _check_writable(dst: str) -> None:
    try:
        os.makedirs(dst, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=dst, prefix=".write-test")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise UserError(f"cannot write into {dst}: {e.strerror or e}") from None


def _check_counts(src: str, layout: str, train: SourceSplit, val: SourceSplit, subset: bool,
                  out: Callable[[str], None]) -> None:
    found = (len(train), len(val), len(train.classes))
    if found == FULL_IMAGENET:
        return
    line = (f"{src} ({layout} layout) holds {found[0]:,} train and {found[1]:,} val images of {found[2]:,} classes "
            f"where ImageNet-1k has {FULL_IMAGENET[0]:,}, {FULL_IMAGENET[1]:,} and {FULL_IMAGENET[2]:,}")
    if not subset:
        raise UserError(f"{line}: an incomplete download? (--subset prepares a deliberate subset)")
    out(f"--subset: {line}")


def _die_with_parent() -> None:
    """Pool workers end with a killed run (Linux), instead of finishing queued shards beside a re-run."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
