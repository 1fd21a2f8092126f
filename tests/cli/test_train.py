"""The ``fishnet-train`` and ``fishnet-eval`` console scripts: what a user runs and gets back.

Training behaviour itself is tested in process (``tests/training``); these pin the command-line
contract: files in the run directory, the printed lines, exit codes, Hydra's features.
"""
import json

import pytest
import torch

from ..helpers import TINY_TRAIN, assert_ok, eval_in_process, metrics, run_cli


def test_two_epochs_write_every_promised_file(trained):
    _, run_dir, _ = trained
    for name in ("config.yaml", "checkpoints/last.pt", "checkpoints/best.pt", "metrics.jsonl", "train.log",
                 ".hydra/config.yaml"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tb").glob("events.out.tfevents.*"))
    assert "runtime: seed 0+rank, deterministic true" in (run_dir / "train.log").read_text()


def test_one_summary_line_per_epoch_matching_metrics(trained):
    _, run_dir, result = trained
    summaries = [line for line in result.stdout.splitlines() if line.startswith("epoch ") and "top1" in line]
    assert len(summaries) == 2
    for line, record in zip(summaries, metrics(run_dir)):
        assert f"top1 {record['top1']:.2f}  top5 {record['top5']:.2f}" in line


def test_saved_config_is_resolved_and_checkpoint_is_plain(trained):
    data, run_dir, _ = trained
    assert f"root: {data}" in (run_dir / "config.yaml").read_text()
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["arch"] == "fishnet99" and state["num_classes"] == 6
    assert state["classes"] == [f"class_{k}" for k in range(6)]
    assert state["config"]["data"]["root"] == str(data)
    assert state["progress"]["epoch"] == 2


@pytest.mark.slow  # over 6 s on 2 cores
def test_eval_of_last_checkpoint_reproduces_the_trainers_last_val_figures(trained, tmp_path):
    data, run_dir, _ = trained
    out = tmp_path / "eval"
    result = run_cli("fishnet-eval", f"checkpoint={run_dir / 'checkpoints' / 'last.pt'}", f"data.root={data}",
                     f"hydra.run.dir={out}", "data.workers=2", f"eval.predictions={tmp_path / 'pred.csv'}")
    assert_ok(result)
    summary = json.loads((out / "eval.json").read_text())
    last = metrics(run_dir)[-1]
    assert summary["images"] == 18 and summary["classes"] == 6 and summary["model"] == "fishnet99"
    assert summary["top1"] == last["top1"] and summary["top5"] == last["top5"]
    assert summary["loss"] == pytest.approx(last["val_loss"], rel=1e-6)
    assert f"top1 {summary['top1']:.2f}  top5 {summary['top5']:.2f}" in result.stdout
    rows = (tmp_path / "pred.csv").read_text().splitlines()
    assert rows[0] == "path,target,pred1,pred2,pred3,pred4,pred5,prob1,prob2,prob3,prob4,prob5"
    assert len(rows) == 19
    per_class = (out / "per_class.csv").read_text().splitlines()
    assert per_class[0].startswith("class_index,class,images,correct") and len(per_class) == 7


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_eval_takes_the_evaluation_sizes_from_the_checkpoint_unless_overridden(trained, tmp_path):
    data, run_dir, _ = trained
    ckpt = run_dir / "checkpoints" / "last.pt"
    results = {}
    for name, extra in (("saved", []), ("overridden", ["data.val_resize=48", "data.val_crop=40"])):
        eval_in_process(ckpt, data, tmp_path / name, *extra)
        results[name] = json.loads((tmp_path / name / "eval.json").read_text())["loss"]
    assert results["saved"] == pytest.approx(metrics(run_dir)[-1]["val_loss"], rel=1e-6)  # 32/32, not 256/224
    assert results["overridden"] != results["saved"]


def test_cfg_job_prints_the_composed_config(tmp_path):
    result = run_cli("fishnet-train", "experiment=fishnet201_cosine_ls", "data.root=/data", "--cfg", "job",
                     cwd=tmp_path)
    assert_ok(result)
    assert "name: fishnet201" in result.stdout and "label_smoothing: 0.1" in result.stdout
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow  # two training jobs and Hydra's sweeper: 8 s
def test_multirun_sweeps_into_separate_run_directories(image_folder, tmp_path):
    result = run_cli("fishnet-train", "-m", *TINY_TRAIN, f"data.root={image_folder}", "trainer.epochs=1",
                     "trainer.max_steps_per_epoch=1", "optim.lr=0.001,0.002", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert_ok(result)
    for job in ("0", "1"):
        assert (tmp_path / "sweep" / job / "checkpoints" / "last.pt").exists()
    lrs = [metrics(tmp_path / "sweep" / job)[0]["lr"] for job in ("0", "1")]
    assert lrs[0] != lrs[1]


@pytest.mark.slow  # two fishnet99 checkpoints through a console script twice: 9 s
def test_convert_checkpoint_console_script_round_trip(tmp_path):
    from fishnet_train.models import create_model, load_weights

    torch.manual_seed(0)
    model = create_model("fishnet99", num_classes=4).eval()
    torch.save({"model": model.state_dict()}, tmp_path / "ours.pt")
    for src, dst, to in (("ours.pt", "released.tar", "released"), ("released.tar", "back.pt", "ours")):
        assert_ok(run_cli("fishnet-convert-checkpoint", str(tmp_path / src), str(tmp_path / dst), "--to", to))
    released = torch.load(tmp_path / "released.tar", weights_only=True)
    assert set(released) == {"epoch", "arch", "state_dict", "best_prec1", "optimizer"}
    assert next(iter(released["state_dict"])).startswith("module.conv1.0")
    back = load_weights(create_model("fishnet99", num_classes=4), tmp_path / "back.pt").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(back(x), model(x))


@pytest.mark.slow
def test_eval_compiled_with_frozen_weights_gives_the_same_figures(trained, tmp_path):
    data, run_dir, _ = trained
    ckpt = run_dir / "checkpoints" / "last.pt"
    summaries = []
    for compiled in ("false", "true"):
        out = tmp_path / f"eval_{compiled}"
        assert_ok(run_cli("fishnet-eval", f"checkpoint={ckpt}", f"data.root={data}", f"hydra.run.dir={out}",
                          "data.workers=2", f"trainer.compile={compiled}", timeout=600))
        summaries.append(json.loads((out / "eval.json").read_text()))
    plain, compiled = summaries
    assert (plain["top1"], plain["top5"], plain["images"]) == (compiled["top1"], compiled["top5"], compiled["images"])
    assert compiled["loss"] == pytest.approx(plain["loss"], rel=1e-3)
