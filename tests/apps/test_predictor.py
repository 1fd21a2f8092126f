"""fishnet-predict in process: the top-k classes of each image, the table, the files written, the refusals."""
import csv
import json
import os

import pytest
import torch
import torch.nn.functional as F

from fishnet_train.apps.predictor import Prediction, prediction_table, run_predict, write_predictions
from fishnet_train.config import to_options
from fishnet_train.data import BatchPreprocess, ValTransform
from fishnet_train.data.decoding.images import load_rgb
from fishnet_train.errors import CheckpointError, UserError
from fishnet_train.models import create_model
from fishnet_train.training.checkpoint import FORMAT

from ..helpers import compose_predict

CLASSES = ["cat", "dog", "eel"]


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = create_model("fishnet99", num_classes=3)
    with torch.no_grad():  # classes far apart, so that the ranking does not hang on rounding
        model.classifier.fc.bias.copy_(torch.tensor([0.0, 2.0, -2.0]))
    path = tmp_path / "w.pt"
    torch.save({"format": FORMAT, "model": model.state_dict(), "arch": "fishnet99", "classes": CLASSES,
                "config": {"data": {"val_resize": 48, "val_crop": 40}}}, path)
    return path, model


def predict_options(checkpoint, inputs, *overrides):
    return to_options(compose_predict(f"checkpoint={checkpoint}", f"inputs={inputs}", "data.workers=0",
                                      "trainer.device=cpu", *overrides))


def expected_probs(model, path):
    """The softmax of the model on the checkpoint's evaluation transform of ``path``."""
    image = ValTransform(48, 40)(load_rgb(str(path)))
    preprocess = BatchPreprocess((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), torch.device("cpu"), False)
    model.eval()
    with torch.no_grad():
        return F.softmax(model(preprocess(image[None])), dim=1)[0]


def test_each_image_gets_the_models_top_classes_best_first_with_their_names(checkpoint, image_folder, tmp_path,
                                                                            capsys):
    path, model = checkpoint
    images = sorted((image_folder / "val").rglob("*.jpg"))
    predictions = run_predict(predict_options(path, image_folder / "val", "predict.topk=2"), str(tmp_path))
    assert [p.path for p in predictions] == [str(i) for i in images]
    for prediction, image in zip(predictions, images):
        probs = expected_probs(model, image)
        best = torch.argsort(probs, descending=True)[:2].tolist()
        assert prediction.classes == best and prediction.names == [CLASSES[c] for c in best]
        assert prediction.probs == pytest.approx(probs[best].tolist(), abs=1e-4)
    table = capsys.readouterr().out
    first = predictions[0]
    assert f"{first.names[0]} ({100 * first.probs[0]:.1f}%)  {first.names[1]} ({100 * first.probs[1]:.1f}%)" in table


def test_top_k_beyond_the_classes_gives_every_class(checkpoint, image_folder, tmp_path):
    image = image_folder / "val" / "class_0" / "img_0.jpg"
    (tmp_path / "run").mkdir()
    (prediction,) = run_predict(predict_options(checkpoint[0], image, "predict.topk=5"), str(tmp_path / "run"))
    assert sorted(prediction.classes) == [0, 1, 2] and sum(prediction.probs) == pytest.approx(1.0, abs=1e-5)
    assert os.listdir(tmp_path / "run") == []  # no TensorBoard folder, no files: the table is printed


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_the_predictions_file_holds_what_was_printed(checkpoint, image_folder, tmp_path, suffix):
    out = tmp_path / f"predictions.{suffix}"
    predictions = run_predict(predict_options(checkpoint[0], image_folder / "val" / "class_1", "predict.topk=2",
                                              f"predict.output={out}"), str(tmp_path))
    if suffix == "jsonl":
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert rows == [{"path": p.path, "classes": p.classes, "names": p.names, "probs": p.probs}
                        for p in predictions]
    else:
        rows = list(csv.reader(out.open()))
        assert rows[0] == ["path", "pred1", "pred2", "name1", "name2", "prob1", "prob2"]
        assert rows[1:] == [[p.path, *map(str, p.classes), *p.names, *(f"{x:.6f}" for x in p.probs)]
                            for p in predictions]


def test_a_file_that_does_not_decode_is_skipped_and_said(checkpoint, image_folder, tmp_path, caplog):
    folder = image_folder / "val" / "class_2"
    (folder / "broken.png").write_bytes(b"not an image")
    predictions = run_predict(predict_options(checkpoint[0], folder), str(tmp_path))
    assert len(predictions) == 3 and all("broken" not in p.path for p in predictions)
    assert f"skipped, cannot decode {folder / 'broken.png'}" in caplog.text


def test_inputs_none_of_which_is_an_image_are_refused_before_any_work(checkpoint, tmp_path):
    (tmp_path / "in").mkdir()
    for name in ("a.png", "b.jpg"):
        (tmp_path / "in" / name).write_bytes(b"junk")
    with pytest.raises(UserError, match=r"inputs=.*in: none of the 2 files is an image \(no image format recognised"):
        run_predict(predict_options(checkpoint[0], tmp_path / "in"), str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()  # refused before the run directory's log


def test_inputs_whose_headers_pass_but_none_decodes_are_refused_after_the_pass(checkpoint, image_folder, tmp_path):
    (tmp_path / "in").mkdir()
    whole = (image_folder / "val" / "class_0" / "img_0.jpg").read_bytes()
    (tmp_path / "in" / "cut.jpg").write_bytes(whole[:whole.index(b"\xff\xda") + 20])  # the headers, no image data
    with pytest.raises(UserError, match=r"inputs=.*in: none of the 1 files decodes as an image"):
        run_predict(predict_options(checkpoint[0], tmp_path / "in"), str(tmp_path))


def test_a_predictions_file_in_a_missing_folder_is_refused_before_classifying(checkpoint, image_folder, tmp_path):
    out = tmp_path / "nowhere" / "p.csv"
    with pytest.raises(UserError, match=f"predict.output={out}: the folder {out.parent} does not exist"):
        run_predict(predict_options(checkpoint[0], image_folder, f"predict.output={out}"), str(tmp_path))


def test_an_unknown_model_name_is_refused(checkpoint, image_folder, tmp_path):
    with pytest.raises(UserError, match="fishnet42"):
        run_predict(predict_options(checkpoint[0], image_folder, "model.name=fishnet42"), str(tmp_path))


def test_the_table_aligns_paths_and_the_file_writers_keep_k_columns(tmp_path):
    predictions = [Prediction("a.png", [1, 0], ["dog", "cat"], [0.75, 0.25]),
                   Prediction("long/b.png", [0, 1], ["cat", "dog"], [0.5, 0.5])]
    assert prediction_table(predictions).splitlines() == [
        "path        predictions",
        "a.png       dog (75.0%)  cat (25.0%)",
        "long/b.png  cat (50.0%)  dog (50.0%)",
    ]
    write_predictions(str(tmp_path / "p.csv"), predictions, 2)
    assert (tmp_path / "p.csv").read_text().splitlines()[1] == "a.png,1,0,dog,cat,0.750000,0.250000"


def test_a_model_name_other_than_the_checkpoints_network_is_refused(checkpoint, image_folder, tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint does not fit the model"):
        run_predict(predict_options(checkpoint[0], image_folder, "model=fishnet150"), str(tmp_path))


def test_model_use_ema_predicts_with_the_checkpoints_average(checkpoint, image_folder, tmp_path):
    """The option fishnet-eval and -export take, through fishnet-predict too."""
    path, model = checkpoint
    state = torch.load(path, weights_only=False)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    averaged = {k: v.clone() for k, v in model.state_dict().items()}
    weights["classifier.fc.bias"] = torch.tensor([0.0, 50.0, -50.0])  # the weights choose class 1,
    averaged["classifier.fc.bias"] = torch.tensor([0.0, -50.0, 50.0])  # their average class 2
    torch.save({**state, "model": weights, "model_ema": averaged, "ema_updates": 5}, path)
    inputs = image_folder / "val" / "class_0"
    raw = run_predict(predict_options(path, inputs), str(tmp_path / "raw"))
    ema = run_predict(predict_options(path, inputs, "model.use_ema=true"), str(tmp_path / "ema"))
    assert {p.classes[0] for p in raw} == {1} and {p.classes[0] for p in ema} == {2}
