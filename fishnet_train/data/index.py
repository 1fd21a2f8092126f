"""Sample indices held in flat arrays, so that forked loader workers share them page for page.

A Python list of ``(path, target)`` tuples is copied page by page into every worker that reads
it (each access writes the objects' reference counts): about 230 MB per worker on ImageNet. Here
the names are one uint8 buffer with offsets and the targets one int32 array; reading a sample
touches no Python object of the index. Shard indices add each sample's shard, offset and size.
"""
from __future__ import annotations

import os
import resource
import zipfile
from array import array
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

from ..errors import UserError


# What reading a damaged or foreign .npz raises.
UNREADABLE_ARRAYS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def save_arrays(path: str, arrays: dict[str, np.ndarray]) -> None:
    """``arrays`` as one .npz file, atomically: a crash leaves the old file or none, never half a
    file, and no temporary file behind."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_arrays(path: str) -> dict[str, np.ndarray]:
    """Every array of a .npz file (no pickles); raises one of UNREADABLE_ARRAYS."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def member_key(name: str) -> str:
    """A webdataset key: the relative path without its extension, other dots made underscores
    (webdataset cuts a member's name at the first dot of its basename)."""
    stem, _ = os.path.splitext(name)
    folder, base = os.path.split(stem)
    return os.path.join(folder, base.replace(".", "_"))


def sample_members(sample_name: str) -> tuple[str, str]:
    """The shard members of a sample: its data ``<key>.<ext>`` (extension lower-cased) and its class ``<key>.cls``."""
    key, ext = member_key(sample_name), os.path.splitext(sample_name)[1].lstrip(".").lower()
    return f"{key}.{ext}", f"{key}.cls"


def open_shard_limit() -> int:
    """Shards one split keeps open in one process: a quarter of the descriptor limit (``ulimit -n``),
    so that a train and a val split and torch's own descriptors fit. ImageNet at 256 MiB makes about
    550 train shards: with a limit of 1024 a quarter of them stay open and other reads reopen."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, (soft if soft != resource.RLIM_INFINITY else 1 << 16) // 4)


@dataclass(frozen=True, eq=False)
class SampleIndex:
    """Sample ``i``: its name (a path relative to the split's root), target, and, for shards,
    where its bytes lie (``shard[i]``, ``offset[i]``, ``size[i]``)."""
    names: np.ndarray  # uint8, every name's UTF-8 bytes end to end
    starts: np.ndarray  # int64, len + 1: name i is names[starts[i]:starts[i + 1]]
    targets: np.ndarray  # int32
    shard: np.ndarray | None = None  # int32 index into the shard files
    offset: np.ndarray | None = None  # int64 byte offset of the file's data in its shard
    size: np.ndarray | None = None  # int64

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, int]]) -> SampleIndex:
        """The index of ``pairs``, consumed one by one: pass a generator, and no list of a million
        objects is ever alive (the memory it would free stays with the process, and forked
        workers' allocations would copy it page by page)."""
        names, ends, targets = bytearray(), array("q"), array("i")
        for name, target in pairs:
            names += name.encode("utf-8", "surrogateescape")
            ends.append(len(names))
            targets.append(target)
        starts = np.zeros(len(ends) + 1, dtype=np.int64)
        starts[1:] = np.frombuffer(ends, dtype=np.int64) if ends else []
        return cls(np.frombuffer(names, dtype=np.uint8).copy(), starts,
                   np.frombuffer(targets, dtype=np.int32).copy() if targets else np.zeros(0, np.int32))

    def __len__(self) -> int:
        return len(self.targets)

    def name(self, i: int) -> str:
        return self.names[self.starts[i]:self.starts[i + 1]].tobytes().decode("utf-8", "surrogateescape")

    def target(self, i: int) -> int:
        return int(self.targets[i])

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return ((self.name(i), self.target(i)) for i in range(len(self)))

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass(frozen=True, eq=False)
class Split:
    """One split: its root (``data.root/<name>``), its classes and its samples, read from
    files under ``root`` or, with ``shard_files``, from tar shards by offset."""
    root: str
    classes: list[str]
    samples: SampleIndex
    shard_files: tuple[str, ...] = ()
    _open: dict[int, int] = field(default_factory=dict, repr=False, compare=False)  # shard -> fd, by recency

    def __len__(self) -> int:
        return len(self.samples)

    def path(self, i: int) -> str:
        """Sample ``i``'s file, or the file a shard was made from."""
        return os.path.join(self.root, self.samples.name(i))

    def target(self, i: int) -> int:
        return self.samples.target(i)

    def location(self, i: int) -> str:
        """Where a person finds sample ``i``, for messages: its file, or in a shard
        ``<shard>:<member>`` (what ``tar -xf <shard> <member>`` extracts) and, where packing
        renamed it, the path it was packed from, relative to the source root."""
        if not self.shard_files or self.samples.shard is None:
            return self.path(i)
        name = self.samples.name(i)
        member, _ = sample_members(name)
        where = f"{self.shard_files[int(self.samples.shard[i])]}:{member}"
        return where if member == name else f"{where} (packed from {os.path.basename(self.root)}/{name})"

    def paths(self) -> list[str]:
        return [self.path(i) for i in range(len(self))]

    def read(self, i: int) -> bytes:
        """Sample ``i``'s encoded bytes. A shard that cannot be read is a UserError, not a bad image:
        skipping it would change the samples silently."""
        s = self.samples
        if s.shard is None or s.offset is None or s.size is None:
            with open(self.path(i), "rb") as f:
                return f.read()
        shard, size = int(s.shard[i]), int(s.size[i])
        try:
            data = os.pread(self._descriptor(shard), size, int(s.offset[i]))
        except OSError as e:
            raise UserError(f"cannot read {self.shard_files[shard]}: {e.strerror or e}") from None
        if len(data) != size:
            raise UserError(f"{self.shard_files[shard]} is shorter than its index says: a truncated copy? "
                            "copy the shards again")
        return data

    def _descriptor(self, shard: int) -> int:
        """The shard's file, open; beyond ``open_shard_limit()`` the least recently read one is closed."""
        fd = self._open.pop(shard, None)
        if fd is None:
            if len(self._open) >= open_shard_limit():
                os.close(self._open.pop(next(iter(self._open))))
            fd = os.open(self.shard_files[shard], os.O_RDONLY)
        self._open[shard] = fd  # the most recent last
        return fd

    def __getstate__(self) -> dict:  # descriptors stay in the process that opened them
        return {**vars(self), "_open": {}}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
