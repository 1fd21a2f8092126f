"""ImageNet as downloaded, in either layout, listed as two splits of samples in ImageFolder order.

Official: ``ILSVRC2012_img_train.tar`` (one inner tar per class), ``ILSVRC2012_img_val.tar`` (flat) and
the devkit. Nothing is extracted: an inner tar is walked in place (a tar opened on the outer file at
the inner tar's start reports positions in the outer file), so every sample is a (size, offset) in
one of the two tars. Kaggle: ``ILSVRC/Data/CLS-LOC/{train/<wnid>,val}/`` with two text files.
"""
from __future__ import annotations

import os
from array import array
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension
from tqdm import tqdm

from ...data.index import SampleIndex
from ...errors import UserError
from .archives import open_tar, plain_files
from .labels import devkit_labels, kaggle_labels, kaggle_synsets, official_val_label

TRAIN_TAR, VAL_TAR, DEVKIT = "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz"
KAGGLE = os.path.join("ILSVRC", "Data", "CLS-LOC")
KAGGLE_CSV, KAGGLE_SYNSETS = "LOC_val_solution.csv", "LOC_synset_mapping.txt"

Imap = Callable[[Callable, Iterable], Iterable]  # an ordered map, maybe over worker processes
Row = tuple[str, int, int]  # file name, size, offset of its data (0 for a file on disk)


@dataclass(frozen=True)
class SourceRef:
    """Where a split's bytes lie: at offsets of ``archive``, or in files under ``folder`` (``flat``: the
    files lie in it directly, not in class folders)."""
    archive: str | None = None
    folder: str | None = None
    flat: bool = False


@dataclass(frozen=True, eq=False)
class SourceSplit:
    """One split's samples in output order (names ``<wnid>/<file>``), their sizes and offsets."""
    name: str
    classes: list[str]
    samples: SampleIndex
    sizes: np.ndarray  # int64
    offsets: np.ndarray  # int64
    ref: SourceRef

    def __len__(self) -> int:
        return len(self.samples)


class SampleReader:
    """Reads samples of one source; the archive is opened once."""

    def __init__(self, ref: SourceRef):
        self.ref = ref
        self.fd = os.open(ref.archive, os.O_RDONLY) if ref.archive else None

    def read(self, name: str, size: int, offset: int) -> bytes:
        where = self.ref.archive or self.ref.folder or ""
        try:
            if self.fd is not None:
                data = os.pread(self.fd, size, offset)
            else:
                with open(os.path.join(where, os.path.basename(name) if self.ref.flat else name), "rb") as f:
                    data = f.read(size + 1)
        except OSError as e:
            raise UserError(f"cannot read {name} of {where}: {e.strerror or e}") from None
        if len(data) != size:
            raise UserError(f"{where}: {name} has not the {size} bytes listed: the source changed or is truncated")
        return data

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)


def find_source(src: str, imap: Imap) -> tuple[str, SourceSplit, SourceSplit]:
    """The layout found under ``src`` and its train and val splits."""
    if not os.path.isdir(src):
        raise UserError(f"{src} is not a directory: give the folder holding the ImageNet download")
    if os.path.isfile(os.path.join(src, TRAIN_TAR)):
        for name in (VAL_TAR, DEVKIT):
            if not os.path.isfile(os.path.join(src, name)):
                raise UserError(f"{os.path.join(src, name)} not found: the official layout needs {TRAIN_TAR}, "
                                f"{VAL_TAR} and {DEVKIT}")
        train = _official_train(os.path.join(src, TRAIN_TAR), imap)
        return "official ILSVRC2012", train, _official_val(src, train.classes)
    if os.path.isdir(os.path.join(src, KAGGLE, "train")):
        train = _kaggle_train(src, imap)
        return "Kaggle", train, _kaggle_val(src, train.classes)
    raise UserError(f"{src} holds neither the official files ({TRAIN_TAR}, {VAL_TAR}, {DEVKIT}) nor the Kaggle "
                    f"layout ({os.path.join(KAGGLE, 'train')}/, {KAGGLE_CSV}, {KAGGLE_SYNSETS})")


def _split(name: str, classes: list[str], rows: Iterable[tuple[str, int, int, int]], ref: SourceRef) -> SourceSplit:
    """From (sample name, target, size, offset) in output order, consumed one by one."""
    sizes, offsets = array("q"), array("q")

    def pairs() -> Iterator[tuple[str, int]]:
        for sample, target, size, offset in rows:
            sizes.append(size)
            offsets.append(offset)
            yield sample, target

    samples = SampleIndex.from_pairs(pairs())
    return SourceSplit(name, classes, samples, np.array(sizes, np.int64), np.array(offsets, np.int64), ref)


def _images(rows: Iterable[Row], source: str) -> list[Row]:
    """The image files an ImageFolder would list, sorted by name; a name twice is a damaged archive."""
    images = sorted(r for r in rows if has_file_allowed_extension(r[0], IMG_EXTENSIONS))
    twice = next((a[0] for a, b in zip(images, images[1:]) if a[0] == b[0]), None)
    if twice is not None:
        raise UserError(f"{source} holds {twice!r} twice: a damaged download?")
    return images


def _class_rows(source: str, classes: list[str], files: Iterable[list[Row]]) -> Iterator[tuple[str, int, int, int]]:
    """(sample name, target, size, offset) from each class's files, taken as they come: a list of every
    file would hold ~200 MB."""
    if len(set(classes)) != len(classes):
        raise UserError(f"{source} lists a class twice")
    listed = tqdm(files, total=len(classes), desc=f"listing {source}", unit="classes", disable=None, leave=False)
    for target, (wnid, class_files) in enumerate(zip(classes, listed)):
        if not class_files:
            raise UserError(f"{source}: no image of the class {wnid}; every class needs some")
        yield from ((f"{wnid}/{name}", target, size, offset) for name, size, offset in class_files)


def _inner_tar(job: tuple[str, str, int, int]) -> list[Row]:
    """The image files of the inner tar ``wnid.tar`` lying at [start, start + size) of the outer tar."""
    path, wnid, start, size = job
    name = f"{path} member {wnid}.tar"
    with open(path, "rb") as f:
        f.seek(start)
        with open_tar(name, fileobj=f) as tar:  # positions are the outer file's
            return _images(plain_files(tar, name, start, start + size), name)


def _official_train(path: str, imap: Imap) -> SourceSplit:
    with open_tar(path) as tar:
        inner = list(plain_files(tar, path, 0, os.path.getsize(path)))
    for name, _, _ in inner:
        if not name.endswith(".tar") or name.startswith("."):  # a class folder named "" or "." would be no class
            raise UserError(f"{path} holds {name!r}: the training archive holds one <wnid>.tar per class")
    inner.sort()
    classes = [name[:-len(".tar")] for name, _, _ in inner]
    files = imap(_inner_tar, [(path, wnid, offset, size) for wnid, (_, size, offset) in zip(classes, inner)])
    return _split("train", classes, _class_rows(path, classes, files), SourceRef(archive=path))


def _labelled(source: str, classes: list[str], rows: Iterable[tuple[str, str, int, int]]) -> Iterator[tuple]:
    """(sample name, target, size, offset) of val files with their wnids, in output order."""
    target_of = {wnid: i for i, wnid in enumerate(classes)}
    found = []
    for name, wnid, size, offset in rows:
        if wnid not in target_of:
            raise UserError(f"{source}: {name} is labelled {wnid}, which is not one of the {len(classes)} train "
                            "classes")
        found.append((target_of[wnid], name, size, offset))
    found.sort()
    missing = sorted(set(range(len(classes))) - {r[0] for r in found})
    if missing:
        raise UserError(f"{source}: no val image of the classes {', '.join(classes[i] for i in missing[:5])}; "
                        "every train class needs some")
    return ((f"{classes[target]}/{name}", target, size, offset) for target, name, size, offset in found)


def _official_val(src: str, classes: list[str]) -> SourceSplit:
    path, labels = os.path.join(src, VAL_TAR), devkit_labels(os.path.join(src, DEVKIT))
    with open_tar(path) as tar:
        rows = [(name, official_val_label(labels, name, path), size, offset)
                for name, size, offset in _images(plain_files(tar, path, 0, os.path.getsize(path)), path)]
    return _split("val", classes, _labelled(path, classes, rows), SourceRef(archive=path))


def _folder_files(folder: str) -> list[Row]:
    with os.scandir(folder) as entries:
        return _images(((e.name, e.stat().st_size, 0) for e in entries if e.is_file()), folder)


def _kaggle_train(src: str, imap: Imap) -> SourceSplit:
    folder = os.path.join(src, KAGGLE, "train")
    with os.scandir(folder) as entries:
        classes = sorted(e.name for e in entries if e.is_dir())
    known = kaggle_synsets(os.path.join(src, KAGGLE_SYNSETS))
    unknown = [c for c in classes if c not in known]
    if unknown:
        raise UserError(f"{folder}: the class folders {', '.join(unknown[:5])} are not in {KAGGLE_SYNSETS}")
    files = imap(_folder_files, [os.path.join(folder, c) for c in classes])
    return _split("train", classes, _class_rows(folder, classes, files), SourceRef(folder=folder))


def _kaggle_val(src: str, classes: list[str]) -> SourceSplit:
    folder, csv = os.path.join(src, KAGGLE, "val"), os.path.join(src, KAGGLE_CSV)
    labels = kaggle_labels(csv)
    if not os.path.isdir(folder):
        raise UserError(f"{folder} not found: the Kaggle layout needs the val images there")
    rows = []
    for name, size, _ in _folder_files(folder):
        image_id = os.path.splitext(name)[0]
        if image_id not in labels:
            raise UserError(f"{csv} has no label for {os.path.join(folder, name)}")
        rows.append((name, labels[image_id], size, 0))
    return _split("val", classes, _labelled(csv, classes, rows), SourceRef(folder=folder, flat=True))
