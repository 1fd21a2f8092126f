import json

import pytest
import torch

from .helpers import TINY_TRAIN, assert_ok, metrics, run_cli, train

METRIC_KEYS = {"epoch", "train_loss", "val_loss", "top1", "top5", "lr", "images_per_sec", "epoch_seconds"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One two-epoch run shared by the tests that only read its outputs."""
    from ..conftest import write_image_folder

    root = tmp_path_factory.mktemp("train")
    data = write_image_folder(root / "data")
    run_dir = root / "run"
    result = train(data, run_dir)
    assert_ok(result)
    return data, run_dir, result


def test_two_epochs_write_every_promised_file(trained):
    _, run_dir, _ = trained
    for name in ("config.yaml", "checkpoints/last.pt", "checkpoints/best.pt", "metrics.jsonl", "train.log"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tb").glob("events.out.tfevents.*"))
    assert not list(run_dir.glob("checkpoints/*.tmp.*"))


def test_metrics_have_the_contract_keys_and_sane_values(trained):
    _, run_dir, _ = trained
    records = metrics(run_dir)
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        assert METRIC_KEYS <= set(r)
        assert 0 <= r["top1"] <= r["top5"] <= 100
        assert r["train_loss"] > 0 and r["images_per_sec"] > 0 and r["epoch_seconds"] > 0


def test_one_summary_line_per_epoch(trained):
    _, _, result = trained
    summaries = [line for line in result.stdout.splitlines() if line.startswith("epoch ") and "top1" in line]
    assert len(summaries) == 2


def test_saved_config_is_resolved_and_checkpoint_is_plain(trained):
    data, run_dir, _ = trained
    assert f"root: {data}" in (run_dir / "config.yaml").read_text()
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["arch"] == "fishnet99" and state["num_classes"] == 3
    assert state["config"]["data"]["root"] == str(data)
    assert state["progress"]["epoch"] == 2


def test_eval_of_last_checkpoint_reproduces_the_trainers_last_val_figures(trained, tmp_path):
    data, run_dir, _ = trained
    out = tmp_path / "eval"
    result = run_cli("fishnet-eval", f"checkpoint={run_dir / 'checkpoints' / 'last.pt'}", f"data.root={data}",
                     f"hydra.run.dir={out}", "data.workers=0", f"eval.predictions={tmp_path / 'pred.csv'}")
    assert_ok(result)
    summary = json.loads((out / "eval.json").read_text())
    last = metrics(run_dir)[-1]
    assert summary["images"] == 9 and summary["classes"] == 3 and summary["model"] == "fishnet99"
    assert summary["top1"] == last["top1"] and summary["top5"] == last["top5"]
    assert summary["loss"] == pytest.approx(last["val_loss"], rel=1e-6)
    rows = (tmp_path / "pred.csv").read_text().splitlines()
    assert rows[0] == "path,target,pred1,pred2,pred3,pred4,pred5,prob1,prob2,prob3,prob4,prob5"
    assert len(rows) == 10
    per_class = (out / "per_class.csv").read_text().splitlines()
    assert per_class[0].startswith("class_index,class,images,correct") and len(per_class) == 4


def test_resume_auto_continues_where_the_run_stopped_and_ends_identical(trained, tmp_path):
    data, uninterrupted, _ = trained
    run_dir = tmp_path / "run"
    assert_ok(train(data, run_dir, "trainer.epochs=1"))
    result = train(data, run_dir, "trainer.resume=auto")
    assert_ok(result)
    assert "resumed from" in result.stdout
    assert [r["epoch"] for r in metrics(run_dir)] == [1, 2]
    a = torch.load(uninterrupted / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0, msg=key)
    for i, state in a["optimizer"]["state"].items():
        torch.testing.assert_close(state["momentum_buffer"], b["optimizer"]["state"][i]["momentum_buffer"], rtol=0, atol=0)


def test_cfg_job_prints_the_composed_config(tmp_path):
    result = run_cli("fishnet-train", "experiment=fishnet201_cosine_ls", "data.root=/data", "--cfg", "job", cwd=tmp_path)
    assert_ok(result)
    assert "name: fishnet201" in result.stdout and "label_smoothing: 0.1" in result.stdout
    assert not (tmp_path / "outputs").exists()


def test_multirun_sweeps_into_separate_run_directories(image_folder, tmp_path):
    result = run_cli("fishnet-train", "-m", *TINY_TRAIN, f"data.root={image_folder}", "trainer.epochs=1",
                     "trainer.max_steps_per_epoch=1", "optim.lr=0.001,0.002", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert_ok(result)
    for job in ("0", "1"):
        assert (tmp_path / "sweep" / job / "checkpoints" / "last.pt").exists()
    lrs = [metrics(tmp_path / "sweep" / job)[0]["lr"] for job in ("0", "1")]
    assert lrs[0] != lrs[1]


def test_bf16_autocast_and_grad_checkpointing_train_on_the_cpu(image_folder, tmp_path):
    result = train(image_folder, tmp_path / "run", "trainer.epochs=1", "trainer.max_steps_per_epoch=2",
                   "trainer.amp=bf16", "model.grad_checkpointing=true", "trainer.channels_last=false")
    assert_ok(result)
    assert metrics(tmp_path / "run")[0]["train_loss"] > 0


def test_fine_tuning_from_a_released_checkpoint_with_other_classes(image_folder, tmp_path):
    from fishnet_train.models import create_model, ours_to_released

    released = tmp_path / "fishnet99_ckpt.tar"
    torch.save({"epoch": 100, "arch": "fishnet99", "best_prec1": 77.41, "optimizer": {},
                "state_dict": ours_to_released(create_model("fishnet99").state_dict())}, released)
    result = train(image_folder, tmp_path / "run", "trainer.epochs=1", "trainer.max_steps_per_epoch=1",
                   f"model.pretrained={released}")
    assert_ok(result)
    assert "classifier re-initialised" in result.stdout


@pytest.mark.slow
def test_eval_compiled_with_frozen_weights_gives_the_same_figures(trained, tmp_path):
    data, run_dir, _ = trained
    ckpt = run_dir / "checkpoints" / "last.pt"
    summaries = []
    for compiled in ("false", "true"):
        out = tmp_path / f"eval_{compiled}"
        assert_ok(run_cli("fishnet-eval", f"checkpoint={ckpt}", f"data.root={data}", f"hydra.run.dir={out}",
                          "data.workers=0", f"trainer.compile={compiled}", timeout=600))
        summaries.append(json.loads((out / "eval.json").read_text()))
    plain, compiled = summaries
    assert (plain["top1"], plain["top5"], plain["images"]) == (compiled["top1"], compiled["top5"], compiled["images"])
    assert compiled["loss"] == pytest.approx(plain["loss"], rel=1e-3)
