"""What only the real download takes: the devkit's full label files (1,000 leaves numbered to 1,000 among
1,860 synsets, 50,000 ground-truth lines) and ImageNet-1k's exact counts."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from fishnet_train.apps.prepare import FULL_IMAGENET, _check_counts
from fishnet_train.apps.prepare.labels import GROUND_TRUTH, META, devkit_labels
from fishnet_train.errors import UserError

from .imagenet_archives import SYNSET_FIELDS, add_file

LEAVES, SYNSETS, VAL = 1000, 1860, 50_000


def full_devkit(path: Path, rng: np.random.Generator) -> tuple[Path, list[str], list[int]]:
    """A devkit whose meta.mat numbers 1,000 leaves 1..1000 in an order unlike the sorted wnids, then 860
    non-leaves with children, and whose ground truth has 50,000 lines using every id, the edges included."""
    wnids = sorted(f"n{rng.integers(10**7, 10**8):08d}" for _ in range(LEAVES))
    numbered = [wnids[i] for i in rng.permutation(LEAVES)]  # devkit id k+1 -> numbered[k]
    synsets = np.zeros((SYNSETS, 1), dtype=[(f, object) for f in SYNSET_FIELDS])
    for k in range(SYNSETS):
        leaf = k < LEAVES
        children = np.zeros(0) if leaf else np.array(rng.integers(1, SYNSETS + 1, 3), np.uint16)
        synsets[k, 0] = (np.uint16(k + 1), numbered[k] if leaf else f"n{k:08d}", "words", "gloss",
                         np.uint8(0 if leaf else 3), children, np.uint8(0 if leaf else 2), np.uint16(1300))
    meta = io.BytesIO()
    scipy.io.savemat(meta, {"synsets": synsets})
    truth = list(rng.integers(1, LEAVES + 1, VAL))
    truth[0], truth[-1] = 1, LEAVES
    with tarfile.open(path, "w:gz") as tar:
        add_file(tar, f"ILSVRC2012_devkit_t12/{META}", meta.getvalue())
        add_file(tar, f"ILSVRC2012_devkit_t12/{GROUND_TRUTH}", "".join(f"{i}\n" for i in truth).encode())
    return path, numbered, truth


def test_the_full_devkit_maps_each_of_50000_lines_through_the_leaf_ids_up_to_1000(tmp_path):
    path, numbered, truth = full_devkit(tmp_path / "devkit.tar.gz", np.random.default_rng(0))
    labels = devkit_labels(str(path))
    assert len(labels) == VAL and min(labels) == 1 and max(labels) == VAL
    assert all(labels[n] == numbered[truth[n - 1] - 1] for n in range(1, VAL + 1))
    assert labels[VAL] == numbered[LEAVES - 1] and labels[1] == numbered[0]


def test_a_ground_truth_line_naming_a_non_leaf_is_refused(tmp_path):
    path, _, _ = full_devkit(tmp_path / "devkit.tar.gz", np.random.default_rng(1))
    with tarfile.open(path) as tar:
        meta = tar.extractfile(f"ILSVRC2012_devkit_t12/{META}").read()  # type: ignore[union-attr]
    with tarfile.open(path, "w:gz") as tar:
        add_file(tar, f"ILSVRC2012_devkit_t12/{META}", meta)
        add_file(tar, f"ILSVRC2012_devkit_t12/{GROUND_TRUTH}", b"1\n1001\n")
    with pytest.raises(UserError, match=f"line 2 of {GROUND_TRUTH} is '1001', not the ILSVRC2012_ID of a leaf"):
        devkit_labels(str(path))


class Counted:
    def __init__(self, count: int, classes: int = 1000) -> None:
        self.count, self.classes = count, [f"n{i:08d}" for i in range(classes)]

    def __len__(self) -> int:
        return self.count


@pytest.mark.parametrize("train, val, classes, complete", [
    (1_281_167, 50_000, 1000, True), (1_281_166, 50_000, 1000, False), (1_281_167, 49_999, 1000, False),
    (1_281_167, 50_000, 999, False), (1_281_168, 50_000, 1000, False),
])
def test_only_imagenet_1ks_exact_counts_pass_without_subset(train, val, classes, complete):
    assert FULL_IMAGENET == (1_281_167, 50_000, 1_000)
    said: list[str] = []
    if complete:
        _check_counts("SRC", "official", Counted(train, classes), Counted(val, classes), False, said.append)
        assert said == []
        return
    with pytest.raises(UserError, match=f"^SRC \\(official layout\\) holds {train:,} train and {val:,} val images of "
                                        f"{classes:,} classes where ImageNet-1k has 1,281,167, 50,000 and 1,000: "
                                        "an incomplete download\\?"):
        _check_counts("SRC", "official", Counted(train, classes), Counted(val, classes), False, said.append)
    _check_counts("SRC", "official", Counted(train, classes), Counted(val, classes), True, said.append)
    assert said == [f"--subset: SRC (official layout) holds {train:,} train and {val:,} val images of {classes:,} "
                    "classes where ImageNet-1k has 1,281,167, 50,000 and 1,000"]
