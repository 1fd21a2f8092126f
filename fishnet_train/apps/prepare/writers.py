"""Writing the planned output, one task (a shard's samples) at a time in any worker, and resuming.

Shards: ``<split>-NNNNNN.tar`` is written as ``.tar.tmp<pid>`` and renamed when whole, then a sidecar
``.prepare/<split>-NNNNNN.npz`` records its fingerprint, its size and its samples' offsets and sizes, so
the index is assembled from the sidecars, without reading a shard. A shard is done when its sidecar
matches the plan and the tar has the size planned (or, with restart markers added, which change the
sizes, the size recorded). Folders: each file through a temporary file and a rename.
"""
from __future__ import annotations

import os
import re
import resource
import sys
import tarfile
import zipfile
from dataclasses import dataclass

import numpy as np

from ...data.index import UNREADABLE_ARRAYS, load_arrays, sample_members
from ...data.decoding.restart_markers import with_restart_markers
from ...data.shards import add_member, index_file
from ...errors import UserError
from .plan import Shard
from .sources import SampleReader, SourceRef, SourceSplit

SIDECARS = ".prepare"
TEMPORARY = re.compile(r"\.tmp\d*$")


@dataclass(frozen=True)
class Task:
    """One shard's samples (or, for folders, the same run of files), all a worker needs to write them."""
    dst: str
    shard: Shard
    ref: SourceRef
    names: list[str]
    targets: list[int]
    sizes: list[int]
    offsets: list[int]  # in the source
    folder: bool
    restart_markers: bool = False  # each JPEG rewritten with a restart marker after every MCU (shards only)


def make_task(dst: str, split: SourceSplit, shard: Shard, folder: bool, restart_markers: bool = False) -> Task:
    span = slice(shard.start, shard.end)
    return Task(dst, shard, split.ref, [split.samples.name(i) for i in range(shard.start, shard.end)],
                split.samples.targets[span].tolist(),
                split.sizes[span].tolist(), split.offsets[span].tolist(), folder, restart_markers)


def run_task(task: Task) -> tuple[int, int, int, float]:
    """Write the task's output; (samples, files written, bytes written, this process's peak RSS in MB)."""
    reader = SampleReader(task.ref)
    try:
        return (*(_write_files(task, reader) if task.folder else _write_shard(task, reader)), peak_rss_mb())
    finally:
        reader.close()


def peak_rss_mb() -> float:
    """This process's peak resident memory (ru_maxrss: KiB on Linux, bytes on macOS)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20 if sys.platform == "darwin" else 1 << 10)


def _write_shard(task: Task, reader: SampleReader) -> tuple[int, int, int]:
    path = os.path.join(task.dst, task.shard.file_name)
    offsets, sizes = [], []
    with tarfile.open(temporary(path), "w", format=tarfile.PAX_FORMAT) as tar:
        for j, name in enumerate(task.names):
            data_member, cls_member = sample_members(name)
            data = reader.read(name, task.sizes[j], task.offsets[j])
            if task.restart_markers:
                data = with_restart_markers(data)[1]
            offsets.append(add_member(tar, data_member, data))
            sizes.append(len(data))
            # The plan and tarfile disagree: a bug, never the data's fault (markers change the sizes: not planned).
            if not task.restart_markers and offsets[-1] != task.shard.offsets[j]:
                raise RuntimeError(f"{path}: {name} written at {offsets[-1]}, planned at {task.shard.offsets[j]}")
            add_member(tar, cls_member, str(task.targets[j]).encode())
    os.replace(temporary(path), path)
    save_fixed_arrays(sidecar(task.dst, task.shard), {
        "fingerprint": np.array(task.shard.fingerprint), "offset": np.array(offsets, np.int64),
        "size": np.array(sizes, np.int64), "file_size": np.array(os.path.getsize(path))})
    return len(task.names), len(task.names), sum(sizes)


def _write_files(task: Task, reader: SampleReader) -> tuple[int, int, int]:
    files = written = 0
    for name, size, offset in zip(task.names, task.sizes, task.offsets):
        path = os.path.join(task.dst, task.shard.split, name)
        if os.path.isfile(path) and os.path.getsize(path) == size:
            continue  # renamed into place whole by an earlier run
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temporary(path), "wb") as f:
            f.write(reader.read(name, size, offset))
        os.replace(temporary(path), path)
        files, written = files + 1, written + size
    return len(task.names), files, written


def temporary(path: str) -> str:
    """A temporary name of this process's own: a worker orphaned by a killed run may still be finishing
    the same file as a re-run."""
    return f"{path}.tmp{os.getpid()}"


def is_temporary(name: str) -> bool:
    return TEMPORARY.search(name) is not None


def sidecar(dst: str, shard: Shard) -> str:
    return os.path.join(dst, SIDECARS, shard.file_name[:-len(".tar")] + ".npz")


def shard_done(dst: str, shard: Shard) -> bool:
    """Whether an earlier run wrote this very shard whole (and its sidecar)."""
    path = os.path.join(dst, shard.file_name)
    try:
        arrays = load_arrays(sidecar(dst, shard))
        size = shard.file_size if shard.file_size >= 0 else int(arrays["file_size"])  # -1: known once written
        return str(arrays["fingerprint"]) == shard.fingerprint and os.path.getsize(path) == size
    except UNREADABLE_ARRAYS:
        return False


def clean_shards(dst: str, split: str, shards: list[Shard]) -> None:
    """Before writing: the split's index (a re-run interrupted leaves none, not a stale one), temporary
    files of an interrupted run, and shards beyond the plan (of an earlier run with other sizes)."""
    os.makedirs(os.path.join(dst, SIDECARS), exist_ok=True)
    planned = {s.file_name for s in shards} | {os.path.basename(sidecar(dst, s)) for s in shards}
    for folder in (dst, os.path.join(dst, SIDECARS)):
        for name in os.listdir(folder):
            stale = name.startswith(f"{split}-") and (is_temporary(name) or name.endswith((".tar", ".npz"))
                                                      and name not in planned)
            if stale or name == os.path.basename(index_file(dst, split)):
                os.remove(os.path.join(folder, name))


def clean_folders(dst: str, split: SourceSplit) -> None:
    """Temporary files an interrupted run left in the class folders."""
    for wnid in split.classes:
        folder = os.path.join(dst, split.name, wnid)
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if is_temporary(name):
                    os.remove(os.path.join(folder, name))


def write_index(dst: str, split: SourceSplit, shards: list[Shard]) -> None:
    """The split's index, from the shards' sidecars; written last: its presence means the split is whole."""
    offsets, sizes = [], []
    for shard in shards:
        try:
            arrays = load_arrays(sidecar(dst, shard))
        except UNREADABLE_ARRAYS as e:
            raise UserError(f"{sidecar(dst, shard)} is unreadable ({e}): run again to rewrite its shard") from None
        if str(arrays["fingerprint"]) != shard.fingerprint:
            raise UserError(f"{sidecar(dst, shard)} is of another run writing into {dst}: run again")
        offsets.append(arrays["offset"])
        sizes.append(arrays["size"])
    shard_of = np.repeat(np.arange(len(shards), dtype=np.int32), [s.end - s.start for s in shards])
    save_fixed_arrays(index_file(dst, split.name), {
        **split.samples.arrays(), "shard": shard_of, "offset": np.concatenate(offsets or [np.zeros(0, np.int64)]),
        "size": np.concatenate(sizes or [np.zeros(0, np.int64)]), "classes": np.array(split.classes),
        "shard_files": np.array([s.file_name for s in shards])})


def save_fixed_arrays(path: str, arrays: dict[str, np.ndarray]) -> None:
    """``save_arrays`` with fixed times in the zip, so that the same arrays make the same bytes."""
    tmp = temporary(path)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, value in arrays.items():
                with zf.open(zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)), "w",
                             force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
