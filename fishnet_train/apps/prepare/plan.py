"""The shards of a split, planned before any byte is read: which samples each holds, where each one's
data lies in it and its final size, from the sizes the source lists. The cuts are ``write_split_shards``'s
(a new shard when the next file would pass the size), so the shards equal those of the same ImageFolder
packed by ``tools/make_shards.py``, byte for byte; any worker can write any shard, and a re-run
writes the same bytes."""
from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass

import numpy as np

from ...data.index import sample_members
from ...data.shards import BLOCK, member_info
from .sources import SourceSplit

LENGTH_NAME, MAX_USTAR_SIZE = 100, 8 ** 11  # beyond these a PAX header holds the name or size


@dataclass(frozen=True, eq=False)
class Shard:
    """Samples [start, end) of ``split``; ``offsets``: where each one's data lies in the shard."""
    split: str
    index: int
    start: int
    end: int
    offsets: np.ndarray  # int64
    file_size: int
    fingerprint: str  # of everything the shard's bytes depend on: a re-run keeps a shard while it matches

    @property
    def file_name(self) -> str:
        return f"{self.split}-{self.index:06d}.tar"


def header_size(name: str, size: int) -> int:
    """Bytes of a shard member's header as tarfile writes it (PAX format), without writing it."""
    if name.isascii() and len(name) <= LENGTH_NAME and size < MAX_USTAR_SIZE:
        return BLOCK  # one ustar block: the common case, without building the header
    return len(member_info(name, size).tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape"))


def padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def tar_file_size(end: int) -> int:
    """The size of a tar whose last member ends at ``end``: two zero blocks, then whole records."""
    return -(-(end + 2 * BLOCK) // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def plan_shards(split: SourceSplit, shard_bytes: int) -> list[Shard]:
    """Consecutive runs of ``split``'s samples of about ``shard_bytes`` each."""
    offsets = np.zeros(len(split), np.int64)
    cuts: list[tuple[int, int]] = []  # (first sample, bytes) of each shard
    start, position = 0, None
    for i in range(len(split)):
        size, target = int(split.sizes[i]), split.samples.target(i)
        if position is None or position + size > shard_bytes:
            if position is not None:
                cuts.append((start, position))
            start, position = i, 0
        data_member, cls_member = sample_members(split.samples.name(i))
        position += header_size(data_member, size)
        offsets[i] = position
        position += padded(size) + header_size(cls_member, len(str(target))) + BLOCK
    if position is not None:
        cuts.append((start, position))
    ends = [start for start, _ in cuts[1:]] + [len(split)]
    return [Shard(split.name, k, start, end, offsets[start:end], tar_file_size(used),
                  _fingerprint(split, start, end, offsets[start:end]))
            for k, ((start, used), end) in enumerate(zip(cuts, ends))]


def _fingerprint(split: SourceSplit, start: int, end: int, offsets: np.ndarray) -> str:
    s = split.samples
    digest = hashlib.sha256()
    for part in (s.names[s.starts[start]:s.starts[end]], s.starts[start:end + 1] - s.starts[start],
                 s.targets[start:end], split.sizes[start:end], offsets, np.array(split.classes)):
        digest.update(np.ascontiguousarray(part).tobytes())
    return digest.hexdigest()
