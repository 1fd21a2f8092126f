"""The test sets the field reports, recognised as their downloads unpack: ImageNet val (folders or shards),
ImageNet-ReaL, ImageNet-V2 (class folders named by index), ImageNet-A and -R (200 wnid folders, scored over
those classes' logits) and ImageNet-Sketch (1000 wnid folders)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources

import numpy as np

from ..config import DataConfig
from ..data import Split, find_split, read_shard_split
from ..data.indexing import check_data_root
from ..errors import UserError

IMAGENET_CLASSES = 1000
# ImageNet val's file names, which ReaL's labels reach the images through.
VAL_FILE = re.compile(r"ILSVRC2012_val_(\d{8})\.\w+$")
# What each set is scored on, as eval.json records it.
PROTOCOLS = {
    "val": "data.root/val, top-1/top-5 over all classes",
    "real": "ImageNet val, top-1 against the ReaL label sets (images with none left out)",
    "imagenet-v2": "folders 0..999 are class indices, top-1/top-5 over 1000 classes",
    "imagenet-a": "200 wnid folders, top-1/top-5 over those 200 classes' logits",
    "imagenet-r": "200 wnid folders, top-1/top-5 over those 200 classes' logits",
    "imagenet-sketch": "1000 wnid folders, top-1/top-5 over 1000 classes",
    "subset": "class folders, top-1/top-5 over the logits of eval.class_subset's classes",
}
_SUBSET_SETS = {"imagenet-a": "imagenet_a_synsets.txt", "imagenet-r": "imagenet_r_synsets.txt"}
_EXPECTED = ("val/ (ImageNet val, or its 1000 wnid folders themselves; ReaL with eval.set=real), folders 0..999 "
             "(ImageNet-V2), the 200 wnid folders of ImageNet-A or -R, or 1000 wnid folders (ImageNet-Sketch)")


@dataclass(frozen=True)
class EvalSet:
    """A set to score: its name (one of ``EVAL_SETS`` but auto, or ``subset``), the folder holding its class
    folders (``data.root/val`` or ``data.root`` itself) and, for A and R, the wnids whose logits count."""
    name: str
    folder: str
    subset: tuple[str, ...] = ()

    @property
    def protocol(self) -> str:
        return PROTOCOLS[self.name]


def timm_info_file(name: str) -> str:
    """A file of timm's published ImageNet facts (``timm/data/_info``): class lists and ReaL's labels."""
    return str(resources.files("timm.data").joinpath("_info").joinpath(name))


def imagenet_wnids() -> list[str]:
    """ImageNet-1k's class folder names in class-index order (sorted), as timm lists them."""
    return _read_lines(timm_info_file("imagenet_synsets.txt"))


def set_wnids(name: str) -> list[str]:
    """The 200 wnids of ImageNet-A or -R, as their authors and timm list them."""
    return _read_lines(timm_info_file(_SUBSET_SETS[name]))


def _read_lines(path: str) -> list[str]:
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def _class_folders(folder: str) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    except OSError as e:
        raise UserError(f"data.root={folder}: cannot list it ({e.strerror or e}); check the path") from None


def _is_index_folders(names: list[str]) -> bool:
    return set(names) == {str(i) for i in range(IMAGENET_CLASSES)}


def detect_set(root: str) -> str:
    """The set a folder holds, from its layout (a listing of folders, no file walk)."""
    if os.path.isdir(os.path.join(root, "val")):
        return "val"
    names = _class_folders(root)
    if _is_index_folders(names):
        return "imagenet-v2"
    for name in _SUBSET_SETS:
        if set(names) == set(set_wnids(name)):
            return name
    if set(names) == set(imagenet_wnids()):  # ImageNet val's own folders, or Sketch's
        return "val" if _holds_val_files(os.path.join(root, names[0])) else "imagenet-sketch"
    shown = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
    raise UserError(f"data.root={root} holds {len(names)} folders ({shown or 'none'}), which is no known test set; "
                    f"expected {_EXPECTED}")


def _holds_val_files(folder: str) -> bool:
    """Whether a class folder's first file keeps ImageNet val's original name (Sketch's are its own)."""
    first = min((e.name for e in os.scandir(folder) if e.is_file()), default="")
    return VAL_FILE.search(first) is not None


def resolve_set(data: DataConfig, requested: str, real_labels: str | None, class_subset: str | None) -> EvalSet:
    """The set ``eval.set`` names (``auto``: the one ``data.root`` holds), its layout checked (a listing only)."""
    if data.format == "shards":  # shards hold ImageNet's val split: val, ReaL or a subset of it
        check_data_root(data, ("val",))
        return EvalSet(_val_set_name(requested, real_labels, class_subset), os.path.join(data.root, "val"))
    if not os.path.isdir(data.root):
        raise UserError(f"data.root {data.root} is not a directory; point it at the test set's folder")
    has_val = os.path.isdir(os.path.join(data.root, "val"))
    if class_subset:
        return EvalSet("subset", os.path.join(data.root, "val") if has_val else data.root)
    name = detect_set(data.root) if requested == "auto" else requested
    if name in ("val", "real"):
        if not has_val and detect_set_or_none(data.root) == "val":  # the val split's own folder
            return EvalSet(_val_set_name(name, real_labels, None), data.root)
        check_data_root(data, ("val",))
        return EvalSet(_val_set_name(name, real_labels, None), os.path.join(data.root, "val"))
    if requested != "auto" and detect_set_or_none(data.root) != name:
        raise UserError(f"eval.set={name}: data.root={data.root} is not laid out as {name} "
                        f"({expected_layout(name)}); point data.root at the set's own folder, or set eval.set=auto")
    return EvalSet(name, data.root, tuple(set_wnids(name)) if name in _SUBSET_SETS else ())


def _val_set_name(requested: str, real_labels: str | None, class_subset: str | None) -> str:
    if class_subset:
        return "subset"
    return "real" if real_labels or requested == "real" else "val"


def detect_set_or_none(root: str) -> str | None:
    try:
        return detect_set(root)
    except UserError:
        return None


def expected_layout(name: str) -> str:
    return {"imagenet-v2": "class folders 0..999", "imagenet-a": "ImageNet-A's 200 wnid folders",
            "imagenet-r": "ImageNet-R's 200 wnid folders", "imagenet-sketch": "ImageNet's 1000 wnid folders"}[name]


def read_set_split(data: DataConfig, eval_set: EvalSet) -> Split:
    """The set's samples with targets in ImageNet's class order where the folders are indices (V2)."""
    if data.format == "shards":
        return read_shard_split(data.root, "val")
    parent, name = os.path.split(os.path.normpath(eval_set.folder))
    split = find_split(parent, name)
    return by_class_index(split) if eval_set.name == "imagenet-v2" else split


def by_class_index(split: Split) -> Split:
    """ImageNet-V2's folders are class indices: sorted as text (0, 1, 10, 100, ...) they are not in class
    order, so each target becomes its folder's number and the classes ImageNet's wnids in index order."""
    numbers = np.array([int(c) for c in split.classes], dtype=np.int32)
    samples = split.samples
    remapped = type(samples)(**{**samples.arrays(), "targets": numbers[samples.targets]})
    return Split(split.root, imagenet_wnids(), remapped, split.shard_files)
