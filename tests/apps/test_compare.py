"""fishnet-compare: checkpoints x test sets in one table, in timm's columns, resumed without evaluating twice."""
import csv
import json
import os
import sys

import pytest
import torch

from fishnet_train.apps.compare import (
    TIMM_COLUMNS, CompareOptions, Entry, compare, read_results, set_label, write_tables,
)
from fishnet_train.apps.eval_sets import imagenet_wnids, set_wnids
from fishnet_train.errors import UserError
from fishnet_train.models import create_model

from ..helpers import assert_user_error, run_cli
from .test_eval_sets import FAVOURED, SIZE, a_name, favouring_model, save_checkpoints, write_set


def torchvision_file(path):
    """A ResNet-50 as torchvision releases it (a bare state dict), its classifier favouring class 42."""
    model = create_model("resnet50")
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.zero_()
        model.fc.bias[FAVOURED[1]] = 5.0
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    fishnet = save_checkpoints(favouring_model(), root / "ckpt")["ours"]
    resnet = torchvision_file(root / "resnet50-0676ba61.pth")
    a = write_set(root / "imagenet-a", set_wnids("imagenet-a"), {imagenet_wnids()[FAVOURED[1]]: 3}, a_name)
    r = write_set(root / "imagenet-r", set_wnids("imagenet-r"), {}, lambda f, i, s: f"art_{i}.jpg")
    return root, (str(fishnet), str(resnet)), (str(a), str(r))


def options(setup, out):
    root, checkpoints, sets = setup
    return CompareOptions(checkpoints, sets[:1], str(out), batch_size=50, workers=2, device="cpu", val_resize=SIZE,
                          val_crop=SIZE)


def rows(path):
    with open(path) as f:
        return list(csv.reader(f))


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_each_set_gets_a_results_csv_in_timms_columns_and_the_summary_every_figure(setup, tmp_path):
    out = tmp_path / "out"
    lines = []
    written = compare(options(setup, out), lines.append)
    assert {os.path.basename(p) for p in written} == {
        "results-imagenet-a.csv", "summary.md", "top1_vs_params.png"}
    a = rows(out / "results-imagenet-a.csv")
    assert tuple(a[0]) == TIMM_COLUMNS
    by_model = {row[0]: row for row in a[1:]}
    assert set(by_model) == {"fishnet99", "resnet50"}
    assert by_model["fishnet99"][6] == "16.63" and by_model["resnet50"][6] == "25.56"  # parameters, millions
    for name in ("fishnet99", "resnet50"):
        record = json.loads((out / "runs" / name / "imagenet-a" / "eval.json").read_text())
        assert float(by_model[name][2]) == pytest.approx(record["top1"], abs=1e-3)
        assert float(by_model[name][3]) == pytest.approx(100 - record["top1"], abs=1e-3)
    # Both favour class 42 among A's 200: the 4 images of its folder, of 203, and only they.
    assert float(by_model["resnet50"][2]) == pytest.approx(100 * 4 / 203, abs=1e-3)
    assert by_model["resnet50"][1] == str(SIZE) and by_model["resnet50"][7] == "1.000"  # the sizes given
    summary = (out / "summary.md").read_text().splitlines()
    assert summary[0] == "| model | params (M) | GMACs at 224 | imagenet-a top-1 / top-5 |"
    assert summary[3].startswith("| resnet50 | 25.56 | 4.09 | 1.97 / ")

    os.remove(out / "runs" / "resnet50" / "imagenet-a" / "eval.json")  # as if stopped before it finished
    kept = (out / "runs" / "fishnet99" / "imagenet-a" / "eval.json").stat().st_mtime_ns
    lines.clear()
    compare(options(setup, out), lines.append)
    assert lines[0] == "fishnet99 on imagenet-a: done before, kept" and "kept" not in lines[1]
    assert (out / "runs" / "fishnet99" / "imagenet-a" / "eval.json").stat().st_mtime_ns == kept
    assert (out / "runs" / "resnet50" / "imagenet-a" / "eval.json").exists()

    root, checkpoints, sets = setup  # another resnet50 file in the same folder: its pairs are evaluated again
    other = torchvision_file(tmp_path / "resnet50-other.pth")
    lines.clear()
    compare(CompareOptions((checkpoints[0], str(other)), sets[:1], str(out), batch_size=50, workers=2, device="cpu",
                           val_resize=SIZE, val_crop=SIZE), lines.append)
    assert lines[0] == "fishnet99 on imagenet-a: done before, kept"
    assert lines[1].startswith("resnet50 on imagenet-a: top1")
    record = json.loads((out / "runs" / "resnet50" / "imagenet-a" / "eval.json").read_text())
    assert record["checkpoint"] == str(other)


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_without_matplotlib_the_tables_are_written_and_one_line_says_why_no_plot(setup, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    root, checkpoints, sets = setup
    lines = []
    only = CompareOptions(checkpoints[:1], sets[:1], str(tmp_path), workers=2, device="cpu", val_resize=SIZE,
                          val_crop=SIZE)
    written = compare(only, lines.append)
    assert not any(p.endswith(".png") for p in written)
    assert "matplotlib is not installed: no plot" in lines[-1]


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_the_same_set_twice_and_a_missing_checkpoint_are_refused_before_any_evaluation(setup, tmp_path):
    root, checkpoints, sets = setup
    with pytest.raises(UserError, match="two folders are the same set"):
        compare(CompareOptions(checkpoints, (sets[0], sets[0]), str(tmp_path / "o")))
    with pytest.raises(UserError, match="--real scores ImageNet val .* no --sets folder is ImageNet's"):
        compare(CompareOptions(checkpoints, sets, str(tmp_path / "o"), real=True))
    (tmp_path / "file").touch()
    with pytest.raises(UserError, match="-o .*file is a file; give a folder"):
        compare(CompareOptions(checkpoints, sets, str(tmp_path / "file")))
    result = run_cli("fishnet-compare", str(tmp_path / "none.pt"), "--sets", sets[0], "-o", str(tmp_path / "o"))
    assert_user_error(result, "checkpoint not found")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("folder, detected, label", [
    ("imagenetv2-matched-frequency-format-val", "imagenet-v2", "imagenetv2-matched-frequency"),
    ("imagenetv2-threshold0.7-format-val", "imagenet-v2", "imagenetv2-threshold0.7"),
    ("imagenetv2-top-images-format-val", "imagenet-v2", "imagenetv2-top-images"),
    ("v2", "imagenet-v2", "imagenetv2"), ("imagenet", "val", "imagenet"), ("sketch", "imagenet-sketch", "sketch"),
    ("imagenet-a", "imagenet-a", "imagenet-a"),
])
def test_each_set_is_named_as_timm_names_its_results_file(folder, detected, label, tmp_path):
    for wnid in imagenet_wnids() if detected == "val" else ():  # ImageNet's val: its 1000 classes
        (tmp_path / folder / "val" / wnid).mkdir(parents=True)
    assert set_label(f"{tmp_path / folder}/", detected) == label


def test_a_val_split_of_your_own_classes_is_named_by_its_folder(image_folder):
    assert set_label(str(image_folder), "val") == "data"


def test_real_figures_become_the_imagenet_real_table(tmp_path):
    entry = Entry("/c/best.pt", "fishnet99", 16_628_904, 4_264_000_000)
    run = tmp_path / "runs" / "fishnet99" / "imagenet"
    run.mkdir(parents=True)
    run.joinpath("eval.json").write_text(json.dumps({
        "top1": 70.0, "top5": 90.0, "real_top1": 77.5, "real_top5": 93.25, "val_resize": 256, "val_crop": 224}))
    table = read_results(str(tmp_path), [entry], {"/data/imagenet": "imagenet"})
    assert (table["imagenet-real"]["fishnet99"]["top1"], table["imagenet-real"]["fishnet99"]["top5"]) == (77.5, 93.25)
    write_tables(str(tmp_path), [entry], table)
    assert rows(tmp_path / "results-imagenet-real.csv")[1] == [
        "fishnet99", "224", "77.500", "22.500", "93.250", "6.750", "16.63", "0.875", "bilinear"]
    assert (tmp_path / "summary.md").read_text().splitlines() == [
        "| model | params (M) | GMACs at 224 | imagenet top-1 / top-5 | imagenet-real top-1 / top-5 |",
        "|---|---:|---:|---:|---:|",
        "| fishnet99 | 16.63 | 4.26 | 70.00 / 90.00 | 77.50 / 93.25 |"]
