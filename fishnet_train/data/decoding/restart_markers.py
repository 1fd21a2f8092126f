"""A folder of JPEGs rewritten with a restart marker after every MCU, so that each training crop decodes
only the MCUs around it (jpeg_region.py): losslessly (the same pixels), files about 7 % larger.

Every file under ``src`` goes to the same relative path under ``dst`` (``dst`` may be ``src``: in place).
A JPEG the region decoder reads is rewritten; any other file (PNG, CMYK JPEG, a file libjpeg refuses
or warns about) is copied, or left alone in place, byte for byte. Each file is written to a temporary
name and renamed, so an interrupted run leaves whole files only, and a second run goes on from there.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ...processes.start_methods import forking_context
from .images import jpeg_frame
from ..index import Split
from .jpeg_region import add_restart_markers, has_mcu_restarts, region_decoder_notice

REWRITTEN, ALREADY, KEPT, DONE = "rewritten", "already", "kept", "done"
TEMPORARY = ".tmp-restart"


@dataclass
class RewriteCounts:
    """Files by outcome (REWRITTEN; ALREADY had the markers; KEPT as they were; DONE by an earlier run)
    and the bytes of the rewritten files before and after."""
    files: dict[str, int] = field(default_factory=lambda: {REWRITTEN: 0, ALREADY: 0, KEPT: 0, DONE: 0})
    bytes_before: int = 0
    bytes_after: int = 0

    def add(self, outcome: str, before: int, after: int) -> None:
        self.files[outcome] += 1
        if outcome == REWRITTEN:
            self.bytes_before, self.bytes_after = self.bytes_before + before, self.bytes_after + after


def relative_files(src: str) -> Iterator[str]:
    """Every file under ``src`` (its temporary files excepted), relative to it, in a stable order."""
    for folder, dirs, names in os.walk(src):
        dirs.sort()
        for name in sorted(names):
            if TEMPORARY not in name:
                yield os.path.relpath(os.path.join(folder, name), src)


def rewrite_file(src: str, dst: str, relative: str) -> tuple[str, int, int]:
    """(outcome, bytes before, bytes after) of one file."""
    source, target = os.path.join(src, relative), os.path.join(dst, relative)
    in_place = os.path.abspath(source) == os.path.abspath(target)
    if not in_place and os.path.exists(target):
        return DONE, 0, 0  # renamed into place whole by an earlier run
    with open(source, "rb") as f:
        data = f.read()
    outcome, out = with_restart_markers(data)
    if in_place and outcome != REWRITTEN:
        return outcome, len(data), len(data)
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    temporary = f"{target}{TEMPORARY}{os.getpid()}"
    with open(temporary, "wb") as f:
        f.write(out)
    shutil.copystat(source, temporary)
    os.replace(temporary, target)
    return outcome, len(data), len(out)


def with_restart_markers(data: bytes) -> tuple[str, bytes]:
    """(outcome, bytes) of one file's contents: a JPEG the region decoder reads with a marker after every MCU
    (REWRITTEN, or ALREADY so), anything else as it is (KEPT)."""
    frame = jpeg_frame(memoryview(data))
    if frame is None or frame[2] not in (1, 3):
        return KEPT, data
    if has_mcu_restarts(data):
        return ALREADY, data
    try:
        return REWRITTEN, add_restart_markers(data)
    except ValueError:  # corrupt or refused: training meets it as it is, and says so
        return KEPT, data


def _rewrite(job: tuple[str, str, str]) -> tuple[str, int, int]:
    return rewrite_file(*job)


def remove_temporary_files(root: str) -> None:
    """What a killed run left half written."""
    for folder, _, names in os.walk(root):
        for name in names:
            if TEMPORARY in name:
                os.remove(os.path.join(folder, name))


def rewrite_tree(src: str, dst: str, workers: int,
                 progress: Callable[[int, int], None] = lambda done, total: None) -> RewriteCounts:
    """Rewrites every file under ``src`` into ``dst`` on ``workers`` processes; progress(done, total)."""
    if os.path.isdir(dst):
        remove_temporary_files(dst)
    jobs = [(src, dst, relative) for relative in relative_files(src)]
    counts = RewriteCounts()
    with contextlib.ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(forking_context().Pool(workers))
            results: Iterator[tuple[str, int, int]] = pool.imap_unordered(_rewrite, jobs, chunksize=64)
        else:
            results = map(_rewrite, jobs)
        for done, result in enumerate(results, 1):
            counts.add(*result)
            progress(done, len(jobs))
    return counts


def region_decoding_notes(region_decode: bool, train: Split, looked_at: int = 8) -> list[str]:
    """What the log says about decoding the training crops: that the region decoder is missing, or that
    none of a few train JPEGs spread through the split has a restart marker after every MCU, and how to
    add them to its folders or shards."""
    if not region_decode:
        return []
    if region_decoder_notice() is not None:
        return [region_decoder_notice() or ""]
    jpegs = 0
    for i in sorted({k * len(train) // looked_at for k in range(looked_at)} & set(range(len(train)))):
        try:
            data = peek(train, i)
        except OSError:  # the loader says which files it cannot read
            continue
        if has_mcu_restarts(data):
            return []
        jpegs += jpeg_frame(memoryview(data)) is not None
    if not jpegs:
        return []
    how = ("write the shards again with `fishnet-prepare <download> <new data.root> --restart-markers`"
           if train.shard_files else
           f"rewrite them once with `python tools/add_restart_markers.py {train.root} {train.root}`")
    return [f"the train JPEGs have no restart marker after every MCU: each training crop entropy-decodes "
            f"every row above it; {how} (lossless) for faster loading"]


def peek(split: Split, i: int) -> bytes:
    """Sample ``i``'s bytes, leaving no shard open (the loader's workers are yet to start)."""
    s = split.samples
    if not split.shard_files or s.shard is None or s.offset is None or s.size is None:
        return split.read(i)
    with open(split.shard_files[int(s.shard[i])], "rb") as f:
        f.seek(int(s.offset[i]))
        return f.read(int(s.size[i]))
