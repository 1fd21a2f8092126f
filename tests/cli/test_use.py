"""Using a trained checkpoint from the command line: fishnet-predict and fishnet-export."""
import csv
import json
import shutil

import pytest
import torch

from ..helpers import assert_ok, assert_user_error, eval_in_process, run_cli


@pytest.mark.slow  # over 6 s on 2 cores
def test_predict_names_the_classes_and_agrees_with_eval(trained, tmp_path):
    data, run_dir, _ = trained
    ckpt = run_dir / "checkpoints" / "last.pt"
    evaluated = eval_in_process(ckpt, data, tmp_path / "eval", f"eval.predictions={tmp_path / 'eval.csv'}")
    result = run_cli("fishnet-predict", f"checkpoint={ckpt}", f"inputs={data / 'val'}", "model=fishnet99",
                     "predict.topk=3", f"predict.output={tmp_path / 'p.jsonl'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert_ok(result)
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    expected = list(csv.DictReader((tmp_path / "eval.csv").open()))
    assert len(rows) == len(expected) == evaluated.images == 18
    for row, ref in zip(rows, expected):
        assert row["path"] == ref["path"]
        assert row["classes"] == [int(ref[f"pred{i}"]) for i in (1, 2, 3)]
        assert row["names"] == [f"class_{c}" for c in row["classes"]]
        assert row["probs"] == pytest.approx([float(ref[f"prob{i}"]) for i in (1, 2, 3)], abs=1e-5)
    table = result.stdout.splitlines()
    assert table[0].split() == ["path", "predictions"] and len(table) == 19
    assert table[1].startswith(rows[0]["path"]) and f"{rows[0]['names'][0]} (" in table[1]


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_predict_reports_and_skips_a_file_that_does_not_decode(trained, tmp_path):
    data, run_dir, _ = trained
    images = tmp_path / "images"
    shutil.copytree(data / "val" / "class_0", images / "nested")
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    # One image per batch, so that one batch holds only the broken file; decoded in a worker process.
    result = run_cli("fishnet-predict", f"checkpoint={run_dir / 'checkpoints' / 'last.pt'}", f"inputs={images}",
                     "data.batch_size=1", "data.workers=1", "predict.topk=10", f"predict.output={tmp_path / 'p.csv'}",
                     f"hydra.run.dir={tmp_path / 'run'}")
    assert_ok(result)
    assert "skipped, cannot decode" in result.stderr and "broken.jpg" in result.stderr
    rows = list(csv.reader((tmp_path / "p.csv").open()))
    k = range(1, 7)  # topk 10, but 6 classes
    assert rows[0] == ["path", *(f"pred{i}" for i in k), *(f"name{i}" for i in k), *(f"prob{i}" for i in k)]
    assert len(rows) == 4 and all("/nested/" in r[0] and len(r) == 19 for r in rows[1:])
    assert all([float(p) for p in r[13:]] == sorted((float(p) for p in r[13:]), reverse=True) for r in rows[1:])


@pytest.mark.slow  # over 6 s on 2 cores
def test_safetensors_export_evaluates_exactly_as_its_checkpoint(trained, tmp_path):
    data, run_dir, _ = trained
    ckpt = run_dir / "checkpoints" / "last.pt"
    weights = tmp_path / "model.safetensors"
    sizes = ("data.val_resize=40", "data.val_crop=36")  # overriding the checkpoint's 32/32: the file keeps these
    result = run_cli("fishnet-export", f"checkpoint={ckpt}", f"output={weights}", f"hydra.run.dir={tmp_path / 'x'}",
                     *sizes)
    assert_ok(result)
    assert "reads back with bit-identical weights" in result.stderr
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(weights), "pt") as f:
        meta = f.metadata()
    assert meta["arch"] == "fishnet99" and json.loads(meta["classes"]) == [f"class_{k}" for k in range(6)]
    assert json.loads(meta["data"]) == {"val_resize": 40, "val_crop": 36, "mean": [0.485, 0.456, 0.406],
                                        "std": [0.229, 0.224, 0.225]}
    saved = torch.load(ckpt, weights_only=True)["model"]
    plain = load_file(str(weights))
    assert set(plain) == set(saved) and all(torch.equal(plain[k], saved[k]) for k in saved)
    from_pt = eval_in_process(ckpt, data, tmp_path / "pt", *sizes)
    from_safetensors = eval_in_process(weights, data, tmp_path / "st")  # its own sizes: 40/36
    assert (from_pt.top1, from_pt.top5, from_pt.loss) == (from_safetensors.top1, from_safetensors.top5,
                                                          from_safetensors.loss)


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_eval_refuses_class_folders_named_otherwise_than_in_training(trained, tmp_path):
    data, run_dir, _ = trained
    shutil.copytree(data / "val", tmp_path / "other" / "val")
    (tmp_path / "other" / "val" / "class_2").rename(tmp_path / "other" / "val" / "zebra")
    result = run_cli("fishnet-eval", f"checkpoint={run_dir / 'checkpoints' / 'last.pt'}", "model=fishnet99",
                     f"data.root={tmp_path / 'other'}", f"hydra.run.dir={tmp_path / 'e'}")
    assert_user_error(result, "other classes than",
                      "only in the checkpoint: ['class_2'], only in the folder: ['zebra']")


@pytest.mark.slow
@pytest.mark.parametrize("fmt, suffix", [("onnx", "onnx"), ("torch_export", "pt2")])
def test_graph_exports_match_the_pytorch_model_on_real_images(trained, tmp_path, fmt, suffix):
    from fishnet_train.data import BatchPreprocess, ValTransform
    from fishnet_train.data.decoding.images import load_rgb
    from fishnet_train.inference import export as formats
    from fishnet_train.models import create_model, load_weights

    data, run_dir, _ = trained
    ckpt = run_dir / "checkpoints" / "last.pt"
    out = tmp_path / f"model.{suffix}"
    result = run_cli("fishnet-export", f"checkpoint={ckpt}", f"format={fmt}", f"output={out}",
                     f"hydra.run.dir={tmp_path / 'x'}", timeout=600)
    assert_ok(result)
    assert f"check: {fmt} outputs match the PyTorch model" in result.stderr
    paths = sorted((data / "val").glob("*/*.jpg"))
    images = torch.stack([ValTransform(32, 32)(load_rgb(str(p))) for p in paths])
    x = BatchPreprocess((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), torch.device("cpu"), False)(images)
    model = load_weights(create_model("fishnet99", num_classes=6), ckpt).eval()
    with torch.no_grad():
        reference = model(x)
    run = formats.run_onnx if fmt == "onnx" else formats.run_program
    sizes = (33, 48, 60) + ((64, 97, 224) if fmt == "onnx" else ())
    for batch in (x, x[:1], x[:5], *(torch.randn(2, 3, s, s) for s in sizes)):
        with torch.no_grad():
            difference, same_top1 = formats.logit_difference(model(batch), run(str(out), batch))
        assert difference <= 1e-4 and same_top1, batch.shape
    assert torch.equal(run(str(out), x).argmax(1), reference.argmax(1))


@pytest.mark.parametrize("case", ["not a checkpoint", "no image among the inputs"])
@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_a_predict_refusal_is_the_only_line_printed(image_folder, tmp_path, case):
    """No runtime line, progress bar or skip line before it: the command refuses before it works."""
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(b"junk" if case.startswith("no image") else
                                            (image_folder / "val" / "class_0" / "img_0.jpg").read_bytes())
    result = run_cli("fishnet-predict", f"checkpoint={tmp_path / 'notes.pt'}", f"inputs={tmp_path / 'in'}",
                     f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and result.stdout == "", result.stdout
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert ("none of the 1 files is an image" in result.stderr) == case.startswith("no image")


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_an_eval_of_a_file_that_is_not_a_checkpoint_is_the_only_line_printed(image_folder, tmp_path):
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    result = run_cli("fishnet-eval", f"checkpoint={tmp_path / 'notes.pt'}", f"data.root={image_folder}",
                     f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and result.stdout == "", result.stdout
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
