"""The label files as published, at their edges: ReaL's class indices 0 and 999 and its empty sets, its
file numbers 1 and 50,000; class-subset files with comments; checkpoints that name their classes or not."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from fishnet_train.apps.eval_labels import (
    model_classes, read_class_subset, read_real_labels, real_label_sets, real_top1, real_top5, subset_outputs,
)
from fishnet_train.apps.eval_sets import imagenet_wnids
from fishnet_train.data import SampleIndex, Split
from fishnet_train.errors import UserError


@pytest.mark.parametrize("labels, ok", [
    ([[], [0, 999], [5]], True), ([[1000]], False), ([[-1]], False), ([[True]], False), ([[1.0]], False),
    ([[0], 3], False), ({"0": [1]}, False), ([["1"]], False),
])
def test_real_json_holds_lists_of_class_indices_from_0_to_999(tmp_path, labels, ok):
    path = tmp_path / "real.json"
    path.write_text(json.dumps(labels))
    if ok:
        assert read_real_labels(str(path)) == labels
        return
    with pytest.raises(UserError, match=f"^eval.real_labels={path} is not a list of label lists with class indices "
                                        "below 1000; give the published real.json$"):
        read_real_labels(str(path))


def test_a_real_json_that_is_no_json_is_one_line(tmp_path):
    (tmp_path / "real.json").write_text("[[1], [2")
    with pytest.raises(UserError, match=r"^eval.real_labels=.*real.json: cannot read it as JSON \(.*\); give the "):
        read_real_labels(str(tmp_path / "real.json"))
    with pytest.raises(UserError, match="cannot read it as JSON"):
        read_real_labels(str(tmp_path / "missing.json"))


def val_split(numbers: list[int], classes: list[str] | None = None) -> Split:
    classes = classes or imagenet_wnids()
    names = [(f"{classes[k % len(classes)]}/ILSVRC2012_val_{n:08d}.JPEG", k % len(classes))
             for k, n in enumerate(numbers)]
    return Split("/val", classes, SampleIndex.from_pairs(names))


def test_each_val_file_gets_the_set_of_its_own_number_the_first_and_the_last_included():
    labels = [[k % 1000] for k in range(50_000)]
    labels[0], labels[-1] = [], [999, 3]
    sets = real_label_sets(labels, val_split([50_000, 1, 2]), "real.json")
    assert sets == [[999, 3], [], [1]]


@pytest.mark.parametrize("numbers", [[0], [3]])
def test_a_val_file_outside_the_labels_is_refused(numbers):
    with pytest.raises(UserError, match=r"^eval.real_labels=real.json: /val/.*ILSVRC2012_val_0000000\d.JPEG is not "
                                        "one of its 2 images"):
        real_label_sets([[1], [2]], val_split(numbers), "real.json")


def test_real_labels_need_imagenets_classes():
    with pytest.raises(UserError, match="needs the val classes to be ImageNet's 1000 wnids, but /val has 2 others "
                                        r"\(first: 'a'\)"):
        real_label_sets([[1]], val_split([1], ["a", "b"]), "real.json")


def test_real_top1_and_top5_count_only_images_with_a_set_that_decoded():
    sets = [[1], [2, 3], [], [4], [5]]
    top1 = [1, 3, 7, None, 6]
    top5 = [[1, 0, 0, 0, 0], [9, 9, 9, 9, 2], [7, 7, 7, 7, 7], None, [0, 0, 0, 0, 0]]
    assert real_top1(top1, sets) == (pytest.approx(200 / 3), 3)  # images 0 and 1 right, 4 wrong
    assert real_top5(top5, sets) == pytest.approx(200 / 3)
    assert real_top1([], []) == (0.0, 0) and real_top5([], []) == 0.0


def test_a_class_subset_file_skips_blank_lines_and_comments(tmp_path):
    (tmp_path / "subset.txt").write_text("n01440764  # tench\n\n# a comment\n  n01443537\n")
    assert read_class_subset(str(tmp_path / "subset.txt")) == ["n01440764", "n01443537"]
    with pytest.raises(UserError, match=f"^eval.class_subset={tmp_path / 'x.txt'}: no such file"):
        read_class_subset(str(tmp_path / "x.txt"))


def checkpoint(classes: list[str] | None, num_classes: int) -> SimpleNamespace:
    return SimpleNamespace(classes=classes, num_classes=num_classes, path="w.pt")


def test_a_model_names_its_outputs_by_its_classes_or_imagenets():
    assert model_classes(checkpoint(["b", "a"], 2)) == ["b", "a"]
    assert model_classes(checkpoint(None, 1000)) == imagenet_wnids()
    with pytest.raises(UserError, match="^a class subset: w.pt names none of its 10 classes"):
        model_classes(checkpoint(None, 10))


def test_a_subset_keeps_each_folders_output_in_the_folders_order():
    ckpt = checkpoint(["a", "b", "c", "d"], 4)
    assert subset_outputs(ckpt, ["d", "b"], ["b", "d"], "eval.class_subset=s.txt", "/val") == [1, 3]
    with pytest.raises(UserError, match=r"^eval.class_subset=s.txt names other classes than the folders of /val "
                                        r"\(only in the folder: \['c'\], only in the subset: \['d'\]\)"):
        subset_outputs(ckpt, ["b", "d"], ["b", "c"], "eval.class_subset=s.txt", "/val")
    with pytest.raises(UserError, match=r"^eval.set=imagenet-a: w.pt has no output for \['x'\]"):
        subset_outputs(ckpt, ["x", "a"], ["a", "x"], "eval.set=imagenet-a", "/val")
