"""ImageFolder splits packed into tar shards, read back by offset.

``DST/<split>-NNNNNN.tar`` hold the original files' bytes, webdataset-style: ``<key>.<ext>`` and
``<key>.cls`` (the class index) per sample, so that tar, webdataset or wids read them too.
``DST/<split>-index.npz`` gives every sample's shard, data offset and size, and its name and
class: the same flat index as a folder's, in the same order, so training on shards reads the
very same samples in the same order as training on the folder they were made from.
"""
from __future__ import annotations

import functools
import io
import os
import shutil
import tarfile
import tempfile
from typing import Callable

import numpy as np

from ..errors import UserError
from ..processes.signals import StopCheck, no_stop
from .folders import check_same_classes, find_split
from .index import UNREADABLE_ARRAYS, SampleIndex, Split, load_arrays, sample_members, save_arrays

BLOCK = tarfile.BLOCKSIZE


def index_file(root: str, name: str) -> str:
    return os.path.join(root, f"{name}-index.npz")


def require_index(root: str, name: str) -> str:
    """The index file of split ``name`` in the shard folder ``root``; one UserError when it is not there."""
    path = index_file(root, name)
    if not os.path.isfile(path):
        raise UserError(f"{path} not found: data.format=shards needs data.root made by "
                        "fishnet-prepare or tools/make_shards.py (or use data.format=folder)")
    return path


def member_info(name: str, size: int) -> tarfile.TarInfo:
    """The header of a shard member: fixed mode and time, so the same files make the same shard."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o444, 0
    return info


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> int:
    """Append a file; the offset of its data in the tar."""
    tar.addfile(member_info(name, len(data)), io.BytesIO(data))
    return tar.offset - -(-len(data) // BLOCK) * BLOCK


def write_split_shards(split: Split, dst: str, name: str, shard_bytes: int,
                       progress: Callable[[int, int], None] = lambda done, total: None) -> int:
    """Pack ``split`` into ``dst/<name>-NNNNNN.tar`` of about ``shard_bytes`` each and write its
    index last (an index present means the shards are complete); returns the shard count."""
    _remove_split(dst, name)  # the old index first: an interrupted re-run leaves no index, not a wrong one
    shard_of: list[int] = []
    offsets: list[int] = []
    sizes: list[int] = []
    files: list[str] = []
    tar = None
    for i in range(len(split)):
        data = split.read(i)
        if tar is None or tar.offset + len(data) > shard_bytes:
            if tar is not None:
                _close_shard(tar, os.path.join(dst, files[-1]))
            files.append(f"{name}-{len(files):06d}.tar")
            tar = tarfile.open(os.path.join(dst, files[-1] + ".tmp"), "w", format=tarfile.PAX_FORMAT)
        data_member, cls_member = sample_members(split.samples.name(i))
        shard_of.append(len(files) - 1)
        offsets.append(add_member(tar, data_member, data))
        sizes.append(len(data))
        add_member(tar, cls_member, str(split.target(i)).encode())
        progress(i + 1, len(split))
    if tar is not None:
        _close_shard(tar, os.path.join(dst, files[-1]))
    save_arrays(index_file(dst, name), {
        **split.samples.arrays(), "shard": np.asarray(shard_of, np.int32), "offset": np.asarray(offsets, np.int64),
        "size": np.asarray(sizes, np.int64), "classes": np.array(split.classes), "shard_files": np.array(files)})
    return len(files)


def _remove_split(dst: str, name: str) -> None:
    if os.path.exists(index_file(dst, name)):
        os.remove(index_file(dst, name))
    for file_name in os.listdir(dst):
        if file_name.startswith(f"{name}-") and file_name.endswith((".tar", ".tar.tmp")) or \
                file_name.startswith(f"{name}-index.npz.tmp"):
            os.remove(os.path.join(dst, file_name))


def _close_shard(tar: tarfile.TarFile, path: str) -> None:
    tar.close()
    os.replace(path + ".tmp", path)


def write_shards(src: str, dst: str, shard_mb: int, progress: Callable[[str, int, int], None]) -> None:
    """Both splits of the ImageFolder root ``src``, as shards under ``dst``."""
    splits = find_split(src, "train"), find_split(src, "val")
    check_same_classes(*splits)
    os.makedirs(dst, exist_ok=True)
    for name, split in zip(("train", "val"), splits):
        write_split_shards(split, dst, name, shard_mb << 20, functools.partial(progress, name))


def read_shard_split(root: str, name: str) -> Split:
    """The split ``name`` of the shard folder ``root``; one UserError when it is not one."""
    path = require_index(root, name)
    try:
        arrays = load_arrays(path)
    except UNREADABLE_ARRAYS as e:
        raise UserError(f"{path} is unreadable ({type(e).__name__}: {e}); run tools/make_shards.py again") from None
    files = tuple(os.path.join(root, str(n)) for n in arrays.pop("shard_files"))
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise UserError(f"{missing[0]} is missing ({len(missing)} of {len(files)} shards of {path}); copy them all")
    classes = [str(c) for c in arrays.pop("classes")]
    return Split(os.path.join(root, name), classes, SampleIndex(**arrays), files)


def read_shard_splits(root: str) -> tuple[Split, Split]:
    splits = read_shard_split(root, "train"), read_shard_split(root, "val")
    check_same_classes(*splits)
    return splits


def stage_shards(root: str, stage_dir: str, check_stop: StopCheck = no_stop) -> str:
    """Copy the shard folder ``root`` into ``stage_dir`` (a local disk), file by file, skipping
    files already there with the same size and time; indices last, so an interrupted copy is redone.
    ``check_stop`` runs between files and between pieces of one (``COPY_CHUNK``): a stop leaves
    whole files only. Returns the staged root."""
    os.makedirs(stage_dir, exist_ok=True)
    names = sorted(os.listdir(root))
    for name in sorted(names, key=lambda n: n.endswith("-index.npz")):
        check_stop()
        source, target = os.path.join(root, name), os.path.join(stage_dir, name)
        if not os.path.isfile(source) or ".tmp" in name:  # a write in progress, or one killed
            continue
        src_stat = os.stat(source)
        if os.path.isfile(target) and (os.path.getsize(target), os.stat(target).st_mtime_ns) == (
                src_stat.st_size, src_stat.st_mtime_ns):
            continue
        _copy_atomic(source, target, check_stop)
    return stage_dir


# Copied between two looks at a stop signal: a fraction of a second from a network filesystem.
COPY_CHUNK = 16 << 20


def _copy_atomic(source: str, target: str, check_stop: StopCheck) -> None:
    """Copy through a temporary file of this process's own: jobs sharing a node's stage folder may
    copy the same file at once, and each must rename a whole copy of its own into place. A copy
    stopped or failed midway removes its temporary file."""
    fd, temporary = tempfile.mkstemp(dir=os.path.dirname(target), prefix=os.path.basename(target) + ".",
                                     suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as dst, open(source, "rb") as src:
            while chunk := src.read(COPY_CHUNK):
                check_stop()
                dst.write(chunk)
        shutil.copystat(source, temporary)  # the time, by which a later run knows the copy current
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
