"""Reading a trained model back: what each kind of file carries (sizes, classes), and the checks on it."""
import dataclasses

import pytest
import torch

from fishnet_train.apps.trained_model import (
    LoadedCheckpoint, build_trained_model, check_same_classes, class_names, inference_data, load_checkpoint,
)
from fishnet_train.config import EvalConfig, to_options
from fishnet_train.errors import CheckpointError, UserError
from fishnet_train.models import FishNet, create_model, ours_to_released
from fishnet_train.training.checkpoint import FORMAT

from ..helpers import TINY_FISHNET, compose_eval


def loaded(num_classes: int, classes=None, data=None) -> LoadedCheckpoint:
    return LoadedCheckpoint("w.pt", "fishnet99", num_classes, {}, data or {}, classes)


def save_trained(path, num_classes=3, classes=("cat", "dog", "eel"), data=None):
    state = FishNet(**TINY_FISHNET, num_classes=num_classes).state_dict()
    torch.save({"format": FORMAT, "model": state, "arch": "fishnet99", "classes": list(classes),
                "config": {"data": data or {"val_resize": 48, "val_crop": 40}}}, path)
    return path


def test_our_checkpoints_carry_their_classes_and_evaluation_sizes(tmp_path):
    ckpt = load_checkpoint(str(save_trained(tmp_path / "w.pt")), arch=None)
    assert (ckpt.arch, ckpt.num_classes, ckpt.classes) == ("fishnet99", 3, ["cat", "dog", "eel"])
    assert ckpt.data == {"val_resize": 48, "val_crop": 40}


def test_released_files_carry_no_class_names_and_their_architecture_is_inferred(tmp_path):
    torch.save({"state_dict": ours_to_released(create_model("fishnet99", num_classes=1000).state_dict())},
               tmp_path / "released.tar")
    ckpt = load_checkpoint(str(tmp_path / "released.tar"), arch=None)
    assert (ckpt.arch, ckpt.num_classes, ckpt.classes, ckpt.data) == ("fishnet99", 1000, None, {})


def test_a_class_list_that_does_not_fit_the_classifier_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="lists 2 class names for a classifier of 3 classes"):
        load_checkpoint(str(save_trained(tmp_path / "w.pt", classes=("a", "b"))), arch=None)


def test_weights_that_do_not_fit_the_model_name_given_are_refused_naming_it(tmp_path):
    path = str(save_trained(tmp_path / "w.pt"))  # a tiny FishNet's weights
    with pytest.raises(CheckpointError, match="^model.name=fishnet150: checkpoint does not fit the model"):
        build_trained_model(load_checkpoint(path, arch="fishnet150"))
    with pytest.raises(CheckpointError, match="^checkpoint does not fit the model"):  # the file's own arch
        build_trained_model(load_checkpoint(path, arch=None))


def test_names_shown_are_the_checkpoints_then_imagenets_then_indices():
    assert class_names(loaded(2, ["cat", "dog"])) == ["cat", "dog"]
    imagenet = class_names(loaded(1000))
    assert len(imagenet) == 1000 and imagenet[0] == "tench" and imagenet[999] == "toilet tissue"
    assert class_names(loaded(3)) == ["0", "1", "2"]


def test_other_class_folders_are_refused_naming_the_differences():
    check_same_classes(loaded(3, ["a", "b", "c"]), ["a", "b", "c"], "/d/val")
    with pytest.raises(UserError, match=r"/d/val has other classes than w.pt was trained on \(only in the "
                       r"checkpoint: \['b'\], only in the folder: \['x'\]\)"):
        check_same_classes(loaded(3, ["a", "b", "c"]), ["a", "x", "c"], "/d/val")
    with pytest.raises(UserError, match=r"only in the checkpoint: \['c'\], only in the folder: \[\]"):
        check_same_classes(loaded(3, ["a", "b", "c"]), ["a", "b"], "/d/val")
    with pytest.raises(UserError, match="class 0 is 'a' there but 'b' in the checkpoint"):
        check_same_classes(loaded(2, ["b", "a"]), ["a", "b"], "/d/val")
    with pytest.raises(UserError, match="predicts 3 classes but /d/val has 2 class folders"):
        check_same_classes(loaded(3), ["a", "b"], "/d/val")


def test_files_without_class_names_are_compared_by_count_only():
    check_same_classes(loaded(3), ["x", "y", "z"], "/d/val")


def test_the_checkpoints_sizes_are_used_unless_given_on_the_command_line():
    data = to_options(compose_eval("checkpoint=x.pt", "data.root=/d", "data.val_crop=64")).data
    ckpt = loaded(3, data={"val_resize": 96, "val_crop": 32, "mean": [0.5, 0.5, 0.5], "batch_size": 7,
                           "root": "/train"})
    merged = inference_data(data, ckpt, {"data.val_crop"})
    assert (merged.val_resize, merged.val_crop, merged.mean) == (96, 64, (0.5, 0.5, 0.5))
    assert (merged.batch_size, merged.root) == (data.batch_size, "/d")  # only the evaluation transform is taken
    with pytest.raises(UserError, match="data.val_crop=64 is larger than data.val_resize=48"):
        inference_data(data, dataclasses.replace(ckpt, data={"val_resize": 48}), {"data.val_crop"})


def test_eval_options_take_model_as_a_group_like_training():
    options = to_options(compose_eval("checkpoint=x.pt", "data.root=/d", "model=fishnet201"))
    assert isinstance(options, EvalConfig) and options.model.name == "fishnet201"
    assert options.model.num_classes is None
