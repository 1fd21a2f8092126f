"""The validation labels of both layouts: the devkit's ground truth (in devkit ids) and Kaggle's CSV."""
from __future__ import annotations

import csv
import io
import os
import re

from ...errors import UserError
from .archives import read_members

META = "data/meta.mat"
GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
VAL_NAME = re.compile(r"ILSVRC2012_val_(\d+)\.JPEG")
WNID = re.compile(r"n\d{8}")


def devkit_labels(devkit: str) -> dict[int, str]:
    """Official val image number (1-based, as in its file name) -> wnid, from the devkit's ground truth,
    whose lines are devkit ids (ILSVRC2012_ID), mapped through meta.mat's leaf synsets."""
    import scipy.io  # only this layout needs it

    meta, truth = read_members(devkit, (META, GROUND_TRUTH), "the ILSVRC2012 development kit (Task 1 & 2)")
    try:
        synsets = scipy.io.loadmat(io.BytesIO(meta), squeeze_me=True)["synsets"]
        leaves = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets.ravel() if int(s["num_children"]) == 0}
    except (ValueError, KeyError, TypeError, IndexError, OSError, NotImplementedError) as e:
        raise UserError(f"{devkit}: {META} is unreadable ({type(e).__name__}: {e})") from None
    labels = {}
    for line_number, line in enumerate(truth.decode("ascii", "replace").split(), 1):
        devkit_id = int(line) if line.isdigit() else None
        if devkit_id not in leaves:
            raise UserError(f"{devkit}: line {line_number} of {GROUND_TRUTH} is {line!r}, not the ILSVRC2012_ID of a "
                            f"leaf synset of {META}")
        labels[line_number] = leaves[devkit_id]
    return labels


def official_val_label(labels: dict[int, str], name: str, archive: str) -> str:
    """The wnid of the official val file ``name``: its number is its line in the ground truth."""
    match = VAL_NAME.fullmatch(name)
    if match is None or int(match.group(1)) not in labels:
        raise UserError(f"{archive}: {name!r} is not an ILSVRC2012_val_NNNNNNNN.JPEG of the development kit's "
                        f"ground truth ({len(labels)} lines)")
    return labels[int(match.group(1))]


def kaggle_labels(solution: str) -> dict[str, str]:
    """ImageId -> wnid from LOC_val_solution.csv: the first token of PredictionString is the label."""
    if not os.path.isfile(solution):
        raise UserError(f"{solution} not found: the Kaggle layout needs the validation labels next to ILSVRC/")
    labels = {}
    with open(solution, newline="") as f:
        rows = csv.reader(f)
        if next(rows, None) != ["ImageId", "PredictionString"]:
            raise UserError(f"{solution}: the first line is not the header ImageId,PredictionString")
        for line_number, row in enumerate(rows, 2):
            tokens = row[1].split() if len(row) == 2 else []
            if not tokens or not WNID.fullmatch(tokens[0]):
                raise UserError(f"{solution}: line {line_number} is not 'ImageId,<wnid> <box>...'")
            labels[row[0]] = tokens[0]
    return labels


def kaggle_synsets(mapping: str) -> set[str]:
    """The wnids of LOC_synset_mapping.txt (``n01440764 tench, Tinca tinca`` per line)."""
    if not os.path.isfile(mapping):
        raise UserError(f"{mapping} not found: the Kaggle layout needs the class list next to ILSVRC/")
    with open(mapping, encoding="utf-8", errors="replace") as f:
        return {line.split()[0] for line in f if line.strip()}
