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


@pytest.mark.parametrize("compiled", [False, True])
def test_trainer_compile_compiles_the_inference_model_and_evaluates_through_it(image_folder, monkeypatch, compiled):
    import torch

    from fishnet_train.apps.evaluator import evaluate_split
    from fishnet_train.data.folders import find_split
    from fishnet_train.models import FishNet
    from fishnet_train.processes.distributed import DistInfo
    from fishnet_train.reporting import Reporter

    from ..helpers import TINY_FISHNET

    calls = []

    class Compiled(torch.nn.Module):  # stands in for torch.compile's wrapper, counting the images it runs
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, x):
            calls.append(len(x))
            return self.module(x)

    monkeypatch.setattr(torch, "compile", lambda module, *args, **kwargs: Compiled(module))
    o = options("checkpoint=unused.pt", f"data.root={image_folder}", "data.workers=0", "data.val_resize=32",
                "data.val_crop=32", "trainer.device=cpu", f"trainer.compile={str(compiled).lower()}")
    torch.manual_seed(0)
    model = FishNet(**TINY_FISHNET, num_classes=3).eval()
    result = evaluate_split(o, model, o.data, find_split(str(image_folder), "val"), DistInfo(), Reporter(None, False))
    assert result.images == 9
    assert sum(calls) == (9 if compiled else 0)  # every image went through the compiled model, or none
