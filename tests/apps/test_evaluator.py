"""The evaluation app's checks, before it reads a checkpoint or an image."""
import pytest

from fishnet_train.apps.evaluator import check_eval_inputs
from fishnet_train.config import to_options
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
    ("model.name=fishnet42", "model.name='fishnet42' is not a known model"),
    ("checkpoint=/nonexistent.pt", "checkpoint not found: /nonexistent.pt"),
])
def test_unknown_models_and_missing_files_are_refused(image_folder, tmp_path, override, message):
    checkpoint = tmp_path / "w.pt"
    checkpoint.write_bytes(b"")
    with pytest.raises(UserError, match=message):
        check_eval_inputs(options(f"checkpoint={checkpoint}", f"data.root={image_folder}", override))
