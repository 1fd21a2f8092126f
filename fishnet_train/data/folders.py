"""ImageFolder trees indexed into flat arrays, and the index cached on disk.

The order of the samples is torchvision's ``make_dataset`` order (classes sorted, each walked
with ``os.walk`` sorted, files sorted), so the flat index and torchvision's list agree sample
for sample. A cached index is reused while the split's and every class folder's modification
time are unchanged (adding, removing or renaming a file changes its folder's time).
"""
from __future__ import annotations

import json
import os
from typing import Callable, Iterator

import numpy as np
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, has_file_allowed_extension

from ..errors import UserError
from ..processes.signals import StopCheck, no_stop
from .index import UNREADABLE_ARRAYS, SampleIndex, Split, load_arrays, save_arrays

CACHE_VERSION = 2  # 2: the fingerprint no longer holds the root's path


def split_classes(root: str, name: str) -> tuple[str, list[str], dict[str, int]]:
    """The class folders of ``root/name`` (a listing of folders, not of files): its path, classes
    and class indices; every problem is one UserError naming the path."""
    if not os.path.isdir(root):
        raise UserError(f"data.root {root} is not a directory; point data.root at the folder holding train/ and val/")
    path = os.path.join(root, name)
    if not os.path.isdir(path):
        raise UserError(f"{path} not found: data.root must hold {name}/ with one folder per class")
    try:
        return (path, *find_classes(path))
    except FileNotFoundError as e:
        raise UserError(f"{path}: {str(e).splitlines()[0]}") from None


def _class_files(path: str, class_name: str) -> list[str]:
    names: list[str] = []
    for folder, _, files in sorted(os.walk(os.path.join(path, class_name), followlinks=True)):
        rel = os.path.relpath(folder, path)
        names.extend(os.path.join(rel, f) for f in sorted(files) if has_file_allowed_extension(f, IMG_EXTENSIONS))
    return names


def find_split(root: str, name: str, check_stop: StopCheck = no_stop) -> Split:
    """Index ``root/name`` as an ImageFolder, one class folder at a time (``check_stop`` before each);
    every problem is one UserError naming the path."""
    path, classes, _ = split_classes(root, name)
    empty: list[str] = []

    def pairs() -> Iterator[tuple[str, int]]:
        for target, class_name in enumerate(classes):
            check_stop()
            files = _class_files(path, class_name)
            if not files:
                empty.append(class_name)
            yield from ((f, target) for f in files)

    samples = SampleIndex.from_pairs(pairs())
    if empty:
        raise UserError(f"{path}: found no valid file for the classes {', '.join(empty[:5])}"
                        f"{' ...' if len(empty) > 5 else ''} (extensions: {', '.join(IMG_EXTENSIONS)})")
    return Split(path, classes, samples)


def check_same_classes(train: Split, val: Split) -> None:
    if train.classes != val.classes:
        only_train = sorted(set(train.classes) - set(val.classes))[:3]
        only_val = sorted(set(val.classes) - set(train.classes))[:3]
        raise UserError(
            f"{val.root} has other classes than {train.root} "
            f"({len(val.classes)} vs {len(train.classes)}; only in train: {only_train}, only in val: {only_val})"
        )


def find_splits(root: str, cache: str | None = None, note: Callable[[str], None] = lambda line: None,
                check_stop: StopCheck = no_stop) -> tuple[Split, Split]:
    """Both splits, read from ``cache`` while the folders are unchanged, else indexed (and
    written to ``cache``, whole or not at all: a stop while walking writes nothing); ``note``
    gets a line saying which."""
    fingerprint = folder_fingerprint(root)
    splits = read_index_cache(cache, fingerprint, root) if cache else None
    if splits is not None:
        note(f"data index: read from {cache}")
    else:
        note(f"data index: walked {root} ({'no cache' if not cache else f'no current cache at {cache}: written'})")
        splits = find_split(root, "train", check_stop), find_split(root, "val", check_stop)
        check_same_classes(*splits)
        if cache:
            try:
                write_index_cache(cache, splits, fingerprint)
            except OSError as e:
                raise UserError(f"data.index_cache={cache}: cannot write it ({e.strerror or e}); "
                                "give a writable file path, or null for no cache") from None
    return splits


def folder_fingerprint(root: str) -> str:
    """The modification times of both splits' folders and class folders (a listing, no file walk). Not the
    root's path: a cache built ahead on a login node, where the data is mounted elsewhere, still holds."""
    times = {}
    for name in ("train", "val"):
        path, classes, _ = split_classes(root, name)
        times[name] = [os.stat(path).st_mtime_ns] + [os.stat(os.path.join(path, c)).st_mtime_ns for c in classes]
    return json.dumps({"version": CACHE_VERSION, "times": times, "extensions": IMG_EXTENSIONS})


def write_index_cache(path: str, splits: tuple[Split, Split], fingerprint: str) -> None:
    """Atomically (``save_arrays``)."""
    arrays = {"fingerprint": np.array(fingerprint)}
    for name, split in zip(("train", "val"), splits):
        arrays[f"{name}.classes"] = np.array(split.classes)
        arrays.update({f"{name}.{k}": v for k, v in split.samples.arrays().items()})
    save_arrays(path, arrays)


def read_index_cache(path: str, fingerprint: str, root: str) -> tuple[Split, Split] | None:
    """The cached splits, or None when there is no cache, it is unreadable or the folders changed."""
    try:
        arrays = load_arrays(path)
        if str(arrays.pop("fingerprint")) != fingerprint:
            return None
    except UNREADABLE_ARRAYS:
        return None
    return tuple(  # type: ignore[return-value]
        Split(os.path.join(root, name), [str(c) for c in arrays[f"{name}.classes"]],
              SampleIndex(**{k.split(".", 1)[1]: v for k, v in arrays.items()
                             if k.startswith(f"{name}.") and k != f"{name}.classes"}))
        for name in ("train", "val"))
