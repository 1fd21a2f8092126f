"""The labels the field reports beside ImageNet's original val labels: ImageNet-ReaL (Beyer et al. 2020,
"Are we done with ImageNet?") and class subsets (ImageNet-A and ImageNet-R evaluate 200 of the 1000 classes)."""
from __future__ import annotations

import json
import os

from ..data import Split
from ..errors import UserError
from .eval_sets import IMAGENET_CLASSES, VAL_FILE, imagenet_wnids
from .trained_model import LoadedCheckpoint


def read_real_labels(path: str) -> list[list[int]]:
    """The published real.json: one list of class indices per val image, possibly empty."""
    try:
        with open(path) as f:
            labels = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"eval.real_labels={path}: cannot read it as JSON ({e}); give the published real.json") \
            from None
    if not (isinstance(labels, list) and all(isinstance(s, list) and all(_is_class(c) for c in s) for s in labels)):
        raise UserError(f"eval.real_labels={path} is not a list of label lists with class indices below "
                        f"{IMAGENET_CLASSES}; give the published real.json")
    return labels


def _is_class(c: object) -> bool:
    return type(c) is int and 0 <= c < IMAGENET_CLASSES


def real_label_sets(labels: list[list[int]], split: Split, path: str) -> list[list[int]]:
    """Each val sample's ReaL set, in the split's order, matched by its file name ILSVRC2012_val_%08d."""
    if split.classes != imagenet_wnids():  # ReaL's labels are indices into them
        raise UserError(f"ReaL (eval.set=real, eval.real_labels) needs the val classes to be ImageNet's "
                        f"{IMAGENET_CLASSES} wnids, but {split.root} has {len(split.classes)} others "
                        f"(first: {split.classes[0]!r})")
    sets = []
    for i in range(len(split)):
        match = VAL_FILE.search(split.samples.name(i))
        if match is None or not 1 <= int(match.group(1)) <= len(labels):
            raise UserError(f"eval.real_labels={path}: {split.path(i)} is not one of its {len(labels)} images "
                            "(ReaL matches images by their original names, ILSVRC2012_val_%08d.JPEG)")
        sets.append(labels[int(match.group(1)) - 1])
    return sets


def real_top1(top1: list[int | None], sets: list[list[int]]) -> tuple[float, int]:
    """ReaL top-1 (percent) and the images it counts: a prediction is right when it is in the image's set;
    images with an empty set are left out, as in the paper, and so are files that did not decode (None)."""
    scored = [(p, s) for p, s in zip(top1, sets) if s and p is not None]
    return 100.0 * sum(p in s for p, s in scored) / max(len(scored), 1), len(scored)


def real_top5(top5: list[list[int] | None], sets: list[list[int]]) -> float:
    """ReaL top-5 (percent), over the images ``real_top1`` counts: right when any of the five is in the set."""
    scored = [(p, s) for p, s in zip(top5, sets) if s and p is not None]
    return 100.0 * sum(any(c in s for c in p) for p, s in scored) / max(len(scored), 1)


def read_class_subset(path: str) -> list[str]:
    """Class folder names (wnids), one per line; blank lines and ``#`` comments are ignored."""
    if not os.path.isfile(path):
        raise UserError(f"eval.class_subset={path}: no such file; give a file of class names (wnids), one per line")
    with open(path) as f:
        names = [line.split("#", 1)[0].strip() for line in f]
    return [n for n in names if n]


def model_classes(ckpt: LoadedCheckpoint) -> list[str]:
    """The folder names of the checkpoint's outputs: its own, or ImageNet's sorted wnids for a
    1000-class file that names none (the released ones)."""
    if ckpt.classes is not None:
        return ckpt.classes
    if ckpt.num_classes == IMAGENET_CLASSES:
        return imagenet_wnids()
    raise UserError(f"a class subset: {ckpt.path} names none of its {ckpt.num_classes} classes, so a subset "
                    "cannot be matched to its outputs")


def subset_outputs(ckpt: LoadedCheckpoint, subset: list[str], folder_classes: list[str], source: str,
                   folder: str) -> list[int]:
    """The model's output for each class folder, in the folder's order: the logits the subset keeps.
    ``source`` names the subset in messages (``eval.class_subset=<file>`` or ``eval.set=<set>``)."""
    if set(subset) != set(folder_classes):
        extra = sorted(set(folder_classes) - set(subset))[:3]
        missing = sorted(set(subset) - set(folder_classes))[:3]
        raise UserError(f"{source} names other classes than the folders of {folder} (only in the folder: {extra}, "
                        f"only in the subset: {missing}); the folder must hold exactly those classes")
    outputs = {name: i for i, name in enumerate(model_classes(ckpt))}
    unknown = [c for c in folder_classes if c not in outputs]
    if unknown:
        raise UserError(f"{source}: {ckpt.path} has no output for {unknown[:3]}; the subset must be "
                        "classes the model was trained on")
    return [outputs[c] for c in folder_classes]
