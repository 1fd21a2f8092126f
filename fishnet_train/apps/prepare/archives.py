"""Reading tar archives without extracting them: member names are data, checked before any use."""
from __future__ import annotations

import tarfile
import zlib
from typing import Iterator

from ...errors import UserError

# What opening or walking a damaged archive raises.
ARCHIVE_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)


def damaged(archive: str, error: BaseException) -> UserError:
    reason = " ".join(str(error).split())  # tarfile's reasons may span lines
    return UserError(f"cannot read {archive}: {reason or type(error).__name__}: a truncated or corrupt download?")


def unsafe(archive: str, name: str, why: str) -> UserError:
    return UserError(f"refusing member {name!r} of {archive}: {why}; the archive is not an ImageNet download "
                     "(nothing was written outside the output folder)")


def plain_name(archive: str, info: tarfile.TarInfo) -> str | None:
    """The member's file name when it is a regular file lying flat in the archive; None for a folder.
    Anything that could point outside the output folder, or is not a plain file, is a UserError."""
    name = info.name
    if "\0" in name or "\\" in name:
        raise unsafe(archive, name, "a NUL or backslash in its name")
    if name.startswith("/") or ".." in name.split("/"):
        raise unsafe(archive, name, "an absolute name or a '..' component")
    if info.issym() or info.islnk():
        raise unsafe(archive, name, "a link")
    if info.isdir():
        return None
    if not info.isreg() or info.issparse():
        raise unsafe(archive, name, "a device, fifo or other special member")
    name = name[2:] if name.startswith("./") else name
    if not name or "/" in name:
        raise unsafe(archive, name, "a file in a sub-folder, where the download has flat files")
    return name


def open_tar(path: str, fileobj=None) -> tarfile.TarFile:
    """An uncompressed tar open for reading; one UserError when it is missing or unreadable."""
    try:
        return tarfile.open(path, "r:", fileobj=fileobj)
    except ARCHIVE_ERRORS as e:
        raise damaged(path, e) from None


def plain_files(tar: tarfile.TarFile, archive: str, start: int, end: int) -> Iterator[tuple[str, int, int]]:
    """(name, size, data offset) of every file of ``tar``, names checked. The offsets are positions in
    the file ``tar`` was opened on, which must hold each member's data within [start, end)."""
    try:
        for info in tar:
            name = plain_name(archive, info)
            if name is None:
                continue
            if info.offset < start or info.offset_data + info.size > end:
                raise UserError(f"{archive}: member {name!r} runs past the archive's end: a truncated or corrupt "
                                "download?")
            yield name, info.size, info.offset_data
    except ARCHIVE_ERRORS as e:
        raise damaged(archive, e) from None


def read_members(archive: str, suffixes: tuple[str, ...], what: str) -> list[bytes]:
    """The bytes of the files of ``archive`` (compressed or not) whose names end with ``suffixes``, read in
    memory; one UserError when one is missing or the archive is unreadable."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for info in tar:
                suffix = next((s for s in suffixes if info.name == s or info.name.endswith("/" + s)), None)
                if suffix is not None and info.isreg():
                    data = tar.extractfile(info)
                    assert data is not None  # a regular file
                    found[suffix] = data.read()
    except ARCHIVE_ERRORS as e:
        raise damaged(archive, e) from None
    missing = [s for s in suffixes if s not in found]
    if missing:
        raise UserError(f"{archive} holds no {missing[0]}: is it {what}?")
    return [found[s] for s in suffixes]
