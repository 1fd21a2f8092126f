"""fishnet-export's own steps, fast: the graph exporters and runtimes are faked (the real ones take
minutes on CPU and are covered by the slow test in test_exporter.py and the inference tests); what is
pinned is what the app hands them, what it writes, what it refuses and what it logs."""
import json

import pytest
import torch
from safetensors import safe_open

from fishnet_train.apps.exporter import check_export_inputs, run_export
from fishnet_train.config import to_options
from fishnet_train.errors import UserError
from fishnet_train.models import create_model

from ..helpers import compose_export
from .test_exporter import perturbed


def fishnet_train_checkpoint(path, **extra):
    """A 3-class FishNet-99 checkpoint of this project, with EMA weights, class names and evaluation sizes."""
    from fishnet_train.training.checkpoint import FORMAT

    torch.manual_seed(0)
    state = create_model("fishnet99", num_classes=3).state_dict()
    torch.save({"format": FORMAT, "arch": "fishnet99", "model": state, "model_ema": perturbed(state),
                "classes": ["cat", "dog", "eel"], **extra,
                "config": {"data": {"val_resize": 80, "val_crop": 72, "mean": [0.5] * 3, "std": [0.25] * 3}}}, path)
    return path


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    return fishnet_train_checkpoint(tmp_path_factory.mktemp("ckpt") / "ours.pt")


def test_the_unchecked_file_is_hidden_beside_the_output_with_its_suffix(tmp_path, monkeypatch):
    from fishnet_train.apps.exporter import unchecked_path

    monkeypatch.chdir(tmp_path)
    assert unchecked_path("out/m.safetensors") == str(tmp_path / "out" / ".m.unchecked.safetensors")


def test_a_known_model_name_passes_and_an_unknown_one_is_refused_with_the_fix(tmp_path):
    checkpoint = tmp_path / "w.pt"
    checkpoint.write_bytes(b"not read by the check")
    out = f"output={tmp_path / 'm.safetensors'}"
    check_export_inputs(to_options(compose_export(f"checkpoint={checkpoint}", out, "model=fishnet99")))
    with pytest.raises(UserError, match=r"model.name='fishnet7' .*\(model=\.\.\., or leave it out to take the "
                                        r"checkpoint's\)$"):
        check_export_inputs(to_options(compose_export(f"checkpoint={checkpoint}", out, "model.name=fishnet7")))


@pytest.mark.parametrize("missing, fmt, check, refused", [
    ("onnx", "onnx", "true", True), ("onnxscript", "onnx", "false", True), ("onnxruntime", "onnx", "true", True),
    ("onnxruntime", "onnx", "false", False), ("onnx", "safetensors", "true", False), (None, "onnx", "true", False),
])
def test_onnx_exports_need_their_packages_and_the_check_onnxruntime(
        tmp_path, monkeypatch, missing, fmt, check, refused):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == missing else real("torch"))
    checkpoint = tmp_path / "w.pt"
    checkpoint.write_bytes(b"not read by the check")
    options = to_options(compose_export(f"checkpoint={checkpoint}", f"format={fmt}", f"check={check}",
                                        f"output={tmp_path / 'm.onnx'}"))
    if refused:
        with pytest.raises(UserError, match=rf"^format=onnx needs the {missing} package: "
                                            r"pip install -e '.\[export\]' in the checkout \(or pip install "
                                            r"onnx onnxscript onnxruntime\)$"):
            check_export_inputs(options)
    else:
        check_export_inputs(options)


def small_data(crop=64):
    import dataclasses

    from fishnet_train.config import DataConfig

    return dataclasses.replace(DataConfig(root="unused"), val_resize=crop + 9, val_crop=crop)


def test_an_onnx_export_is_the_graph_of_the_model_traced_at_the_crop_with_the_opset(tmp_path, monkeypatch):
    from fishnet_train.apps.exporter import write_export
    from fishnet_train.inference import export as formats

    model, calls = object(), {}
    monkeypatch.setattr(formats, "export_graph_model", lambda m: ("graph of", m))
    monkeypatch.setattr(formats, "onnx_bytes", lambda *args: calls.setdefault("onnx", args) and b"an onnx model")
    write_export("onnx", None, small_data(64), model, str(tmp_path / "m.onnx"), 17)
    graph, example, opset = calls["onnx"]
    assert graph == ("graph of", model) and opset == 17
    # A fixed example of batch 2 at the evaluation crop: the same file each time.
    assert torch.equal(example, torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    assert (tmp_path / "m.onnx").read_bytes() == b"an onnx model"


def test_a_torch_export_program_is_traced_from_the_graph_and_saved_to_the_path(tmp_path, monkeypatch):
    from fishnet_train.apps.exporter import write_export
    from fishnet_train.inference import export as formats

    model, calls = object(), {}
    monkeypatch.setattr(formats, "export_graph_model", lambda m: ("graph of", m))
    monkeypatch.setattr(formats, "export_program", lambda *args: calls.setdefault("program", args) and "program")
    monkeypatch.setattr(torch.export, "save", lambda program, f: f.write(f"saved {program}".encode()))
    write_export("torch_export", None, small_data(64), model, str(tmp_path / "m.pt2"), 18)
    graph, example = calls["program"]
    assert graph == ("graph of", model)
    assert torch.equal(example, torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    assert (tmp_path / "m.pt2").read_bytes() == b"saved program"


def tiny_classifier():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 5)).eval()


@pytest.mark.parametrize("fmt, runtime", [("onnx", "run_onnx"), ("torch_export", "run_program")])
def test_a_graph_export_is_run_in_its_runtime_at_two_sizes_and_the_worst_difference_is_reported(
        tmp_path, monkeypatch, fmt, runtime):
    from fishnet_train.apps.exporter import check_export
    from fishnet_train.inference import export as formats

    model, runs = tiny_classifier(), []

    def run(path, images):  # the model's logits, off by 1e-6 then 5e-6 of their range
        runs.append((path, images))
        with torch.no_grad():
            logits = model(images)
        return logits + (logits.max() - logits.min()) * (1e-6 if len(runs) == 1 else 5e-6)

    def wrong_runtime(*args):
        raise AssertionError("the other format's runtime")

    monkeypatch.setattr(formats, runtime, run)
    monkeypatch.setattr(formats, {"run_onnx": "run_program", "run_program": "run_onnx"}[runtime], wrong_runtime)
    options = to_options(compose_export("checkpoint=c.pt", f"format={fmt}", "output=m.out"))
    line = check_export(options, "staged.file", model, small_data(64))
    assert line == (f"check: {fmt} outputs match the PyTorch model within 5.0e-06 of the logit range "
                    "(batch 2 at 64 px and batch 3 at 80 px), same top-1")
    generator = torch.Generator().manual_seed(1)  # fixed images: a check that passes once passes again
    expected = [torch.randn(2, 3, 64, 64, generator=generator), torch.randn(3, 3, 80, 80, generator=generator)]
    assert [p for p, _ in runs] == ["staged.file"] * 2
    assert all(torch.equal(images, e) for (_, images), e in zip(runs, expected))


@pytest.mark.parametrize("difference, same_top1, refused", [
    (1e-4, True, False), (1.5e-4, True, True), (0.0, False, True)])
def test_a_graph_export_is_refused_above_the_bound_or_with_another_top1(monkeypatch, difference, same_top1, refused):
    from fishnet_train.apps.exporter import check_export
    from fishnet_train.inference import export as formats

    monkeypatch.setattr(formats, "run_onnx", lambda path, images: images)
    monkeypatch.setattr(formats, "logit_difference", lambda reference, other: (difference, same_top1))
    options = to_options(compose_export("checkpoint=c.pt", "format=onnx", "output=m.onnx"))
    if not refused:  # the bound itself passes
        assert "within 1.0e-04" in check_export(options, "m.onnx", tiny_classifier(), small_data(64))
        return
    with pytest.raises(UserError) as refusal:
        check_export(options, "m.onnx", tiny_classifier(), small_data(64))
    assert str(refusal.value) == (
        f"the onnx export differs from the PyTorch model at batch 2, 64 px: {difference:.2e} of the logit range "
        f"(bound 0.0001), same top-1: {same_top1}; not written (check=false writes it unchecked)")


def test_metadata_names_the_format_the_model_its_classes_and_its_evaluation_transform():
    from types import SimpleNamespace

    from fishnet_train.apps.exporter import metadata
    from fishnet_train.models.weights import WEIGHTS_FORMAT

    ckpt = SimpleNamespace(arch="fishnet99", num_classes=3, classes=["cat", "dog", "eel"])
    meta = metadata(ckpt, small_data(64))
    assert (meta["format"], meta["arch"], json.loads(meta["num_classes"])) == (WEIGHTS_FORMAT, "fishnet99", 3)
    assert json.loads(meta["classes"]) == ["cat", "dog", "eel"]
    assert set(json.loads(meta["data"])) == {"val_resize", "val_crop", "mean", "std"}


def test_an_export_of_a_checkpoint_carries_its_ema_weights_classes_and_sizes_unless_overridden(tmp_path, ours):
    from safetensors.torch import load_file

    weights = tmp_path / "m.safetensors"
    options = to_options(compose_export(f"checkpoint={ours}", f"output={weights}", "model.use_ema=true",
                                        "data.val_crop=64"))
    run_export(options, str(tmp_path), overridden=["data.val_crop"])
    with safe_open(str(weights), "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["classes"]) == ["cat", "dog", "eel"]
    assert json.loads(meta["data"]) == {"val_resize": 80, "val_crop": 64, "mean": [0.5] * 3, "std": [0.25] * 3}
    ema = torch.load(ours, weights_only=False)["model_ema"]
    assert torch.equal(load_file(str(weights))["classifier.fc.weight"], ema["classifier.fc.weight"])


def test_a_safetensors_export_logs_that_its_weights_read_back_bit_identical(tmp_path, ours, caplog):
    import logging

    caplog.set_level(logging.INFO)
    run_export(to_options(compose_export(f"checkpoint={ours}", f"output={tmp_path / 'm.safetensors'}")),
               str(tmp_path))
    assert "check: the safetensors file reads back with bit-identical weights" in caplog.messages


def test_the_export_is_checked_at_a_hidden_path_then_moved_into_place_and_each_step_logged(
        tmp_path, ours, monkeypatch, caplog):
    import logging
    import os

    import fishnet_train.apps.exporter as exporter

    out, seen = tmp_path / "out", {}
    out.mkdir()

    def check(options, path, model, data):
        seen.update(path=path, output_exists=(out / "m.safetensors").exists(), crop=data.val_crop)
        return "check: fine"

    monkeypatch.setattr(exporter, "check_export", check)
    caplog.set_level(logging.INFO)
    run_export(to_options(compose_export(f"checkpoint={ours}", f"output={out / 'm.safetensors'}")), str(tmp_path))
    assert seen == {"path": str(out / ".m.unchecked.safetensors"), "output_exists": False, "crop": 72}
    assert os.listdir(out) == ["m.safetensors"] and not (tmp_path / "tb").exists()
    mib = os.path.getsize(out / "m.safetensors") / 2**20
    assert [r.getMessage() for r in caplog.records if r.name == "fishnet_train"] == [
        f"fishnet99 (3 classes) from {ours} exported as safetensors ({mib:.1f} MiB)", "check: fine",
        f"written to {out / 'm.safetensors'}"]


def test_check_false_writes_the_output_itself(tmp_path, ours):
    run_export(to_options(compose_export(f"checkpoint={ours}", f"output={tmp_path / 'm.safetensors'}",
                                         "check=false")), str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_a_check_that_fails_with_its_file_gone_still_reports_the_checks_error(tmp_path, ours, monkeypatch):
    import os

    import fishnet_train.apps.exporter as exporter

    def check(options, path, model, data):
        os.remove(path)
        raise UserError("unreadable")

    monkeypatch.setattr(exporter, "check_export", check)
    with pytest.raises(UserError, match="unreadable"):
        run_export(to_options(compose_export(f"checkpoint={ours}", f"output={tmp_path / 'm.safetensors'}")),
                   str(tmp_path))


def test_a_graph_export_is_of_the_checkpoints_model_with_the_given_opset(tmp_path, ours, monkeypatch):
    from fishnet_train.inference import export as formats
    from fishnet_train.models import FishNet

    calls = {}
    monkeypatch.setattr(formats, "export_graph_model", lambda model: model)
    monkeypatch.setattr(formats, "onnx_bytes", lambda *args: calls.setdefault("onnx", args) and b"onnx")
    run_export(to_options(compose_export(f"checkpoint={ours}", "format=onnx", "check=false", "opset=19",
                                         f"output={tmp_path / 'm.onnx'}")), str(tmp_path))
    model, example, opset = calls["onnx"]
    assert isinstance(model, FishNet) and model.state_dict()["classifier.fc.weight"].shape[0] == 3
    assert opset == 19 and example.shape == (2, 3, 72, 72)


def test_model_options_that_do_not_fit_the_checkpoint_are_refused(tmp_path, ours):
    out = f"output={tmp_path / 'm.safetensors'}"
    with pytest.raises(UserError, match="predicts 3 classes, not model.num_classes=10"):
        run_export(to_options(compose_export(f"checkpoint={ours}", out, "model.num_classes=10")), str(tmp_path))
    # model=NAME is the architecture built: FishNet-99 weights do not load into a FishNet-150 (check=false:
    # refused when the model is built, not only when the check reads the file back).
    with pytest.raises(UserError, match="model.name=fishnet150: checkpoint does not fit the model"):
        run_export(to_options(compose_export(f"checkpoint={ours}", out, "model=fishnet150", "check=false")),
                   str(tmp_path))
    assert not (tmp_path / "m.safetensors").exists()
