"""The export app in process: released checkpoints export too, and bad destinations are refused first."""
import json

import pytest
import torch
from safetensors import safe_open

from fishnet_train.apps.exporter import check_export_inputs, run_export
from fishnet_train.apps.predictor import run_predict
from fishnet_train.config import to_options
from fishnet_train.errors import UserError
from fishnet_train.models import create_model, ours_to_released

from ..helpers import compose_export, compose_predict


def save_released(path):
    torch.manual_seed(0)
    torch.save({"epoch": 100, "state_dict": ours_to_released(create_model("fishnet99").state_dict())}, path)
    return path


def test_a_released_checkpoint_exports_with_the_published_protocol_and_predicts_imagenet_names(
        tmp_path, image_folder):
    save_released(tmp_path / "released.tar")
    weights = tmp_path / "fishnet99.safetensors"
    run_export(to_options(compose_export(f"checkpoint={tmp_path / 'released.tar'}", f"output={weights}")),
               str(tmp_path))
    with safe_open(str(weights), "pt") as f:
        meta = f.metadata()
    assert (meta["arch"], meta["num_classes"], "classes" in meta) == ("fishnet99", "1000", False)
    assert json.loads(meta["data"])["val_resize"] == 256 and json.loads(meta["data"])["val_crop"] == 224
    predictions = run_predict(to_options(compose_predict(
        f"checkpoint={weights}", f"inputs={image_folder / 'val' / 'class_0' / 'img_0.png'}", "data.workers=0",
        "trainer.device=cpu")), str(tmp_path))
    assert len(predictions) == 1 and len(predictions[0].names) == 5
    from torchvision.models import ResNet50_Weights

    categories = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    assert predictions[0].names == [categories[c] for c in predictions[0].classes]


def test_destinations_that_cannot_work_are_refused_before_reading_anything(tmp_path):
    checkpoint = tmp_path / "w.pt"
    checkpoint.write_bytes(b"not read by the check")
    with pytest.raises(UserError, match="output=.*/no/m.onnx: the folder .*/no does not exist"):
        check_export_inputs(to_options(compose_export(f"checkpoint={checkpoint}", "format=onnx",
                                                      f"output={tmp_path / 'no' / 'm.onnx'}")))
    with pytest.raises(UserError, match="is the checkpoint itself"):
        same = tmp_path / "w.safetensors"
        same.write_bytes(b"")
        check_export_inputs(to_options(compose_export(f"checkpoint={same}", f"output={same}")))


def test_an_export_that_fails_its_check_leaves_nothing_behind(tmp_path, monkeypatch):
    import fishnet_train.apps.exporter as exporter

    def failing_check(*args):
        raise UserError("differs")

    monkeypatch.setattr(exporter, "check_export", failing_check)
    options = to_options(compose_export(f"checkpoint={save_released(tmp_path / 'r.tar')}",
                                        f"output={tmp_path / 'out' / 'm.safetensors'}"))
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match="differs"):
        run_export(options, str(tmp_path))
    assert list((tmp_path / "out").iterdir()) == []
