"""The evaluation app: its checks, before it reads a checkpoint or an image, and the files it writes."""
import csv
import json
import logging
import os

import pytest
import torch
import torch.nn.functional as F

from fishnet_train.apps.evaluator import check_eval_inputs
from fishnet_train.config import to_options
from fishnet_train.data import BatchPreprocess, ValTransform
from fishnet_train.data.decoding.images import load_rgb
from fishnet_train.errors import CheckpointError, UserError
from fishnet_train.models import create_model
from fishnet_train.training.checkpoint import FORMAT

from ..helpers import compose_eval, eval_in_process


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


@pytest.mark.parametrize("key", ["eval.real_labels", "eval.class_subset"])
def test_a_label_file_that_does_not_exist_is_refused_naming_its_key(image_folder, tmp_path, key):
    checkpoint = tmp_path / "w.pt"
    checkpoint.write_bytes(b"")
    with pytest.raises(UserError, match=f"{key}={tmp_path / 'none.json'}: no such file"):
        check_eval_inputs(options(f"checkpoint={checkpoint}", f"data.root={image_folder}",
                                  f"{key}={tmp_path / 'none.json'}"))


def trained(path):
    """A FishNet-99 checkpoint of 3 classes named as ``image_folder``'s, evaluated at 48/40 px."""
    torch.manual_seed(0)
    model = create_model("fishnet99", num_classes=3)
    with torch.no_grad():  # logits of a few units, one class favoured: some images right, some wrong
        model.classifier.fc.weight.mul_(0.002)
        model.classifier.fc.bias.copy_(torch.tensor([0.0, 0.5, -0.5]))
    torch.save({"format": FORMAT, "model": model.state_dict(), "arch": "fishnet99", "classes": CLASSES,
                "config": {"data": {"val_resize": 48, "val_crop": 40}}}, path)
    return model


CLASSES = ["class_0", "class_1", "class_2"]


def test_the_figures_written_are_those_of_the_models_predictions(image_folder, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    ckpt, classes = tmp_path / "w.pt", CLASSES
    model = trained(ckpt)
    result = eval_in_process(ckpt, image_folder, tmp_path / "eval", f"eval.predictions={tmp_path / 'p.csv'}")
    assert sorted(os.listdir(tmp_path / "eval")) == ["eval.json", "per_class.csv"]
    assert f"fishnet99 on val (9 images): top1 {result.top1:.2f}  top5 100.00  loss {result.loss:.4f}" in caplog.text

    preprocess = BatchPreprocess((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), torch.device("cpu"), False)
    model.eval()
    files = sorted((image_folder / "val").rglob("*.jpg"))
    targets = [classes.index(f.parent.name) for f in files]
    with torch.no_grad():
        batch = torch.stack([ValTransform(48, 40)(load_rgb(str(f))) for f in files])
        probs = F.softmax(model(preprocess(batch)), dim=1)
    best = probs.argmax(1).tolist()
    correct = [sum(b == t == k for b, t in zip(best, targets)) for k in range(3)]
    assert 0 < sum(correct) < len(files) and 0.05 < probs.max(1).values.min() < probs.max() < 0.95
    assert result.top1 == pytest.approx(100 * sum(correct) / len(files)) and result.top5 == 100.0
    summary = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert {k: summary[k] for k in ("images", "classes", "model", "checkpoint", "skipped_images", "tta",
                                    "class_subset", "processes")} == {
        "images": 9, "classes": 3, "model": "fishnet99", "checkpoint": str(ckpt), "skipped_images": 0,
        "tta": "none", "class_subset": None, "processes": 1}
    assert summary["top1"] == pytest.approx(result.top1) and summary["loss"] == pytest.approx(result.loss)
    rows = list(csv.reader((tmp_path / "eval" / "per_class.csv").open()))
    assert rows == [["class_index", "class", "images", "correct", "top1"]] + [
        [str(k), classes[k], "3", str(correct[k]), f"{100.0 * correct[k] / 3:.4f}"] for k in range(3)]
    rows = list(csv.reader((tmp_path / "p.csv").open()))
    assert len(rows) == 1 + len(files)
    assert rows[0] == ["path", "target", "pred1", "pred2", "pred3", "pred4", "pred5",
                       "prob1", "prob2", "prob3", "prob4", "prob5"]
    for row, f, t, p in zip(rows[1:], files, targets, probs):
        ranked = torch.argsort(p, descending=True).tolist()
        assert row[:5] == [str(f), str(t), *map(str, ranked)] and row[5:7] == ["", ""]
        assert [float(x) for x in row[7:10]] == pytest.approx(p[ranked].tolist(), abs=1e-4) and row[10:] == ["", ""]


def test_a_model_name_other_than_the_checkpoints_network_is_refused(image_folder, tmp_path):
    trained(tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="checkpoint does not fit the model"):
        eval_in_process(tmp_path / "w.pt", image_folder, tmp_path / "eval", "model.name=fishnet150")
