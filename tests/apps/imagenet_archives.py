"""Small ImageNet downloads laid out exactly like the real ones, for ``fishnet-prepare``'s tests.

Official: ``ILSVRC2012_img_train.tar`` (one inner ``<wnid>.tar`` of flat files per class),
``ILSVRC2012_img_val.tar`` (flat), ``ILSVRC2012_devkit_t12.tar.gz`` (``data/meta.mat`` written by
scipy.io.savemat as the struct array ``synsets``, with non-leaf synsets, and the ground truth in devkit
ids, which are NOT in sorted-wnid order). Kaggle: ``ILSVRC/Data/CLS-LOC/{train/<wnid>,val}/``,
``LOC_val_solution.csv`` and ``LOC_synset_mapping.txt``.
"""
from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

WNIDS = ["n01440764", "n01443537", "n01484850"]  # sorted: the class indices 0, 1, 2
DEVKIT_IDS = {"n01484850": 1, "n01440764": 2, "n01443537": 3}  # the devkit numbers them otherwise
NON_LEAVES = [(4, "n00001740", [1, 2, 5]), (5, "n01317541", [3])]  # (id, wnid, children): to be ignored
SYNSET_FIELDS = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
                 "num_train_images"]


@dataclass
class Download:
    """The images: ``train[wnid][file]`` and ``val[file] = (wnid, bytes)``, val files numbered from 1."""
    train: dict[str, dict[str, bytes]] = field(default_factory=dict)
    val: dict[str, tuple[str, bytes]] = field(default_factory=dict)

    def expected(self, split: str) -> list[tuple[str, int, bytes]]:
        """(name, target, bytes) in ImageFolder order: classes sorted, files sorted in each."""
        files = ({(w, f): b for w, fs in self.train.items() for f, b in fs.items()} if split == "train"
                 else {(w, f): b for f, (w, b) in self.val.items()})
        return [(f"{w}/{f}", WNIDS.index(w), b) for (w, f), b in sorted(files.items(),
                                                                        key=lambda k: (WNIDS.index(k[0][0]), k[0][1]))]


def jpeg(rng: np.random.Generator, width: int, height: int, mode: str = "RGB", fmt: str = "JPEG") -> bytes:
    """Noise, so that the sizes are those of photos (about 110 KB at 500x375, quality 90)."""
    pixels = rng.integers(0, 256, (height, width, 4 if mode == "CMYK" else 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "CMYK" if mode == "CMYK" else "RGB").save(out, fmt, quality=90)
    return out.getvalue()


def make_download(train_per_class: int = 3, val_per_class: int = 2, big: int = 0, seed: int = 0) -> Download:
    """Varied sizes, file numbers whose string order is not their numeric order, one CMYK JPEG and one
    PNG named .JPEG (both kept byte for byte); ``big`` noise photos of ~110 KB per class besides."""
    rng, download = np.random.default_rng(seed), Download()
    for k, wnid in enumerate(WNIDS):
        numbers = [9, 10026, 1500, 77, 3][:train_per_class] + [20000 + i for i in range(big)]
        download.train[wnid] = {
            f"{wnid}_{n}.JPEG": jpeg(rng, 500, 375) if n >= 20000 else jpeg(rng, 20 + 7 * i, 16 + 5 * k)
            for i, n in enumerate(numbers)}
    download.train[WNIDS[0]][f"{WNIDS[0]}_8.JPEG"] = jpeg(rng, 24, 20, mode="CMYK")
    download.train[WNIDS[1]][f"{WNIDS[1]}_8.JPEG"] = jpeg(rng, 24, 20, fmt="PNG")
    for odd in ("9" * 110, "\u00e9t\u00e9"):  # names a PAX header holds in a shard: longer than 100, not ASCII
        download.train[WNIDS[2]][f"{WNIDS[2]}_{odd}.JPEG"] = jpeg(rng, 22, 18)
    labels = [w for w in WNIDS for _ in range(val_per_class)]
    rng.shuffle(labels)
    for i, wnid in enumerate(labels, 1):
        download.val[f"ILSVRC2012_val_{i:08d}.JPEG"] = (wnid, jpeg(rng, 30 + i, 25))
    return download


def tar_bytes(members: dict[str, bytes], crafted: tarfile.TarInfo | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members.items():
            add_file(tar, name, data)
        if crafted is not None:
            add_crafted(tar, crafted)
    return out.getvalue()


def add_crafted(tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
    tar.addfile(member, io.BytesIO(b"x" * member.size) if member.size else None)


def add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 1340000000
    tar.addfile(info, io.BytesIO(data))


def meta_mat(wnids: list[str]) -> bytes:
    """meta.mat as the devkit has it: a (N, 1) struct array ``synsets``, leaves first."""
    rows = [(DEVKIT_IDS[w], w, 0, np.zeros(0)) for w in wnids]
    rows += [(i, w, len(c), np.array(c, np.uint16)) for i, w, c in NON_LEAVES]
    synsets = np.zeros((len(rows), 1), dtype=[(f, object) for f in SYNSET_FIELDS])
    for row, (devkit_id, wnid, children, ids) in enumerate(sorted(rows)):
        synsets[row, 0] = (np.uint16(devkit_id), wnid, f"words of {wnid}", "a gloss", np.uint8(children), ids,
                           np.uint8(0 if children == 0 else 2), np.uint16(1300 if children == 0 else 0))
    out = io.BytesIO()
    scipy.io.savemat(out, {"synsets": synsets})
    return out.getvalue()


def write_official(root: Path, download: Download, ground_truth: list[int] | None = None,
                   crafted: tuple[str, tarfile.TarInfo] | None = None) -> Path:
    """The three official files under ``root``; ``crafted``: a member (without data) added last to the
    ``"outer"`` train tar, the ``"inner"`` tar of the first class or the ``"val"`` tar."""
    root.mkdir(parents=True, exist_ok=True)
    where, member = crafted or ("", None)
    with tarfile.open(root / "ILSVRC2012_img_train.tar", "w", format=tarfile.GNU_FORMAT) as tar:
        for k, (wnid, files) in enumerate(download.train.items()):
            add_file(tar, f"{wnid}.tar", tar_bytes(files, member if where == "inner" and k == 0 else None))
        if where == "outer":
            add_crafted(tar, member)
    (root / "ILSVRC2012_img_val.tar").write_bytes(tar_bytes({f: b for f, (_, b) in download.val.items()},
                                                            member if where == "val" else None))
    truth = ground_truth or [DEVKIT_IDS[download.val[f][0]] for f in sorted(download.val)]
    devkit = {"ILSVRC2012_devkit_t12/data/meta.mat": meta_mat(list(download.train)),
              "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt":
                  "".join(f"{i}\n" for i in truth).encode(),
              "ILSVRC2012_devkit_t12/COPYING": b"devkit"}
    with tarfile.open(root / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tar:
        for name, data in devkit.items():
            add_file(tar, name, data)
    return root


def write_kaggle(root: Path, download: Download, csv_labels: dict[str, str] | None = None) -> Path:
    data = root / "ILSVRC" / "Data" / "CLS-LOC"
    for wnid, files in download.train.items():
        (data / "train" / wnid).mkdir(parents=True)
        for name, content in files.items():
            (data / "train" / wnid / name).write_bytes(content)
    (data / "val").mkdir(parents=True)
    rows = []
    for name, (wnid, content) in download.val.items():
        (data / "val" / name).write_bytes(content)
        label = (csv_labels or {}).get(name, wnid)
        rows.append(f"{os.path.splitext(name)[0]},{label} 16 2 499 322 {label} 1 1 20 20\n")
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "".join(reversed(rows)))
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} words of {w}, more words\n" for w in WNIDS))
    return root


def write_image_folder(root: Path, download: Download) -> Path:
    """The ImageFolder ``root/{train,val}/<wnid>/<file>`` holding the same files."""
    for split in ("train", "val"):
        for name, _, content in download.expected(split):
            (root / split / name).parent.mkdir(parents=True, exist_ok=True)
            (root / split / name).write_bytes(content)
    return root
