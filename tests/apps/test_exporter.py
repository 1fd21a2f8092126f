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


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
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
    # One image, in this process: the test is about the file's metadata, not loading.
    predictions = run_predict(to_options(compose_predict(
        f"checkpoint={weights}", f"inputs={image_folder / 'val' / 'class_0' / 'img_0.jpg'}", "data.workers=0",
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


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
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


def perturbed(state: dict) -> dict:
    """The same weights but one, changed by a little: what a broken export would hold."""
    state = dict(state)
    key = "classifier.fc.weight" if "classifier.fc.weight" in state else next(k for k in state if k.endswith("weight"))
    state[key] = state[key] + 1e-2
    return state


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_a_safetensors_export_of_other_weights_is_refused_and_not_written(tmp_path, monkeypatch):
    """The real read-back check fed a failing case: the file written holds weights the checkpoint does not."""
    from fishnet_train.inference import export as formats

    real = formats.safetensors_bytes
    monkeypatch.setattr(formats, "safetensors_bytes", lambda state, meta: real(perturbed(state), meta))
    out = tmp_path / "out"
    out.mkdir()
    options = to_options(compose_export(f"checkpoint={save_released(tmp_path / 'r.tar')}",
                                        f"output={out / 'm.safetensors'}"))
    with pytest.raises(UserError, match="read back holds other weights than"):
        run_export(options, str(tmp_path))
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_a_graph_export_whose_outputs_differ_is_refused_and_not_written(tmp_path, monkeypatch):
    """The parity check of torch.export programs fed a graph of slightly other weights."""
    from fishnet_train.inference import export as formats

    real = formats.export_graph_model

    def other_graph(model):
        graph = real(model)
        graph.load_state_dict(perturbed(graph.state_dict()))
        return graph

    monkeypatch.setattr(formats, "export_graph_model", other_graph)
    out = tmp_path / "out"
    out.mkdir()
    options = to_options(compose_export(f"checkpoint={save_released(tmp_path / 'r.tar')}", "format=torch_export",
                                        f"output={out / 'm.pt2'}", "data.val_crop=64", "data.val_resize=73"))
    with pytest.raises(UserError, match="the torch_export export differs from the PyTorch model at batch 2"):
        run_export(options, str(tmp_path))
    assert list(out.iterdir()) == []


def test_the_logit_check_refuses_a_difference_above_its_bound_or_another_top1():
    from fishnet_train.apps.exporter import MAX_LOGIT_DIFFERENCE
    from fishnet_train.inference.export import logit_difference

    reference = torch.tensor([[0.0, 10.0, 5.0], [3.0, 1.0, 2.0]])
    assert logit_difference(reference, reference) == (0.0, True)
    difference, same = logit_difference(reference, reference + torch.tensor([[0.0, 0.0, 2e-3], [0, 0, 0]]))
    assert difference > MAX_LOGIT_DIFFERENCE and same
    assert logit_difference(reference, reference[:, [2, 1, 0]])[1] is False
