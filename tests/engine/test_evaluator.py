"""The evaluation app's checks, before it reads a checkpoint or an image."""
import pytest

from fishnet_train.config import to_options
from fishnet_train.engine.evaluator import check_eval_inputs, eval_data_options
from fishnet_train.errors import UserError

from ..helpers import compose_eval


def options(*overrides):
    return to_options(compose_eval(*overrides))


def test_a_predictions_file_in_a_missing_folder_is_refused_before_evaluating(image_folder, tmp_path):
    checkpoint = tmp_path / "w.pt"
    checkpoint.write_bytes(b"not read by the check")
    with pytest.raises(UserError, match=r"eval.predictions=.*the folder .*/no does not exist"):
        check_eval_inputs(options(f"checkpoint={checkpoint}", f"data.root={image_folder}",
                                  f"eval.predictions={tmp_path / 'no' / 'p.csv'}"))


@pytest.mark.parametrize("override, message", [
    ("model.name=fishnet42", "unknown model 'fishnet42'"),
    ("checkpoint=/nonexistent.pt", "checkpoint not found: /nonexistent.pt"),
])
def test_unknown_models_and_missing_files_are_refused(image_folder, tmp_path, override, message):
    checkpoint = tmp_path / "w.pt"
    checkpoint.write_bytes(b"")
    with pytest.raises(UserError, match=message):
        check_eval_inputs(options(f"checkpoint={checkpoint}", f"data.root={image_folder}", override))


def test_an_overridden_crop_must_fit_the_checkpoints_resize():
    data = options("checkpoint=x.pt", "data.root=/d", "data.val_crop=64").data
    assert eval_data_options(data, {"val_resize": 96, "val_crop": 32}, {"data.val_crop"}).val_crop == 64
    with pytest.raises(UserError, match="data.val_crop=64 is larger than data.val_resize=48"):
        eval_data_options(data, {"val_resize": 48, "val_crop": 32}, {"data.val_crop"})
