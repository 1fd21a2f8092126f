"""fishnet-average: the mean of several checkpoints' weights, read back like any checkpoint."""
import pytest
import torch

from fishnet_train.apps.averager import average
from fishnet_train.apps.trained_model import load_checkpoint
from fishnet_train.cli.average import main
from fishnet_train.errors import CheckpointError, UserError
from fishnet_train.models import create_model
from fishnet_train.models.weights import WEIGHTS_FORMAT

from ..conftest import write_image_folder
from ..helpers import assert_ok, eval_in_process, run_cli

CLASSES = ["class_0", "class_1", "class_2"]


def checkpoint(path, seed, arch="fishnet99", classes=CLASSES, ema=False):
    """A training-like checkpoint with weights and BN statistics of its own."""
    torch.manual_seed(seed)
    state = create_model(arch, num_classes=len(classes)).state_dict()
    for key, value in state.items():
        if value.is_floating_point():
            value.copy_(torch.rand_like(value) + 0.5)
        else:
            value.fill_(seed)  # num_batches_tracked
    extra = {"model_ema": {k: v * 2 for k, v in state.items()}} if ema else {}
    # The evaluation sizes, as an exported file carries them: small, for a fast CPU test.
    torch.save({"format": WEIGHTS_FORMAT, "data": {"val_resize": 36, "val_crop": 32}, "model": state, "arch": arch,
                "classes": classes, **extra}, path)
    return path


def test_the_average_is_the_mean_of_every_weight_and_statistic(tmp_path):
    paths = [str(checkpoint(tmp_path / f"{i}.pt", seed)) for i, seed in enumerate((1, 2, 4))]
    average(paths, str(tmp_path / "avg.pt"))
    got = load_checkpoint(str(tmp_path / "avg.pt"), None)
    states = [torch.load(p, weights_only=True)["model"] for p in paths]
    assert got.arch == "fishnet99" and got.classes == CLASSES and got.data == {"val_resize": 36, "val_crop": 32}
    for key, value in got.state.items():
        if value.is_floating_point():
            assert torch.allclose(value, sum(s[key] for s in states) / 3, atol=1e-6), key
        else:
            assert int(value) == 4, key  # counters: the last file's


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_the_average_evaluates(tmp_path):
    paths = [str(checkpoint(tmp_path / f"{i}.pt", seed)) for i, seed in enumerate((1, 2, 4))]
    average(paths, str(tmp_path / "avg.pt"))
    data = write_image_folder(tmp_path / "data", ext="jpg")
    assert eval_in_process(tmp_path / "avg.pt", data, tmp_path / "eval").images == 9


def test_the_ema_weights_are_averaged_when_asked(tmp_path):
    paths = [str(checkpoint(tmp_path / f"{i}.pt", i, ema=True)) for i in (1, 2)]
    average(paths, str(tmp_path / "avg.pt"), use_ema=True)
    saved = torch.load(tmp_path / "avg.pt", weights_only=True)
    assert saved["ema"] is True and saved["averaged"] == [str(tmp_path / "1.pt"), str(tmp_path / "2.pt")]
    key = "classifier.fc.weight"
    expected = sum(torch.load(p, weights_only=True)["model_ema"][key] for p in paths) / 2
    assert torch.allclose(load_checkpoint(str(tmp_path / "avg.pt"), None).state[key], expected)


@pytest.mark.parametrize("other, message", [
    (dict(arch="fishnet150"), "is a fishnet150 with 3 classes"),
    (dict(classes=["a", "b", "c"]), "trained on other classes"),
    (dict(classes=CLASSES + ["class_3"]), "with 4 classes"),
    (dict(classes=["class_1", "class_0", "class_2"]), "trained on other classes"),  # the same, in another order
])
def test_checkpoints_of_other_runs_are_refused(tmp_path, other, message):
    paths = [str(checkpoint(tmp_path / "a.pt", 1)), str(checkpoint(tmp_path / "b.pt", 2, **other))]
    with pytest.raises(CheckpointError, match=message):
        average(paths, str(tmp_path / "avg.pt"))
    assert not (tmp_path / "avg.pt").exists()


def test_weights_of_other_shapes_are_refused_in_one_line(tmp_path):
    paths = [str(checkpoint(tmp_path / "a.pt", 1)), str(checkpoint(tmp_path / "b.pt", 2))]
    other = torch.load(paths[1], weights_only=True)
    other["model"]["classifier.fc.bias"] = torch.zeros(2, 2)  # same keys, another shape
    torch.save(other, paths[1])
    with pytest.raises(CheckpointError, match="hold different weights"):
        average(paths, str(tmp_path / "avg.pt"))


def test_one_checkpoint_is_not_an_average(tmp_path):
    with pytest.raises(UserError, match="needs two checkpoints or more"):
        average([str(checkpoint(tmp_path / "a.pt", 1))], str(tmp_path / "avg.pt"))


@pytest.mark.slow  # a FishNet-99 forward pass over 224 px batches on the CPU
def test_the_command_recomputes_batch_norm_statistics_on_train_jpegs_with_workers(tmp_path):
    paths = [str(checkpoint(tmp_path / f"{i}.pt", i)) for i in (1, 2)]
    data = write_image_folder(tmp_path / "data", ext="jpg")
    result = run_cli("fishnet-average", *paths, "-o", str(tmp_path / "bn.pt"), "--bn-data", str(data),
                     "--bn-batches", "3", "--batch-size", "4", "--workers", "2")
    assert_ok(result)
    assert "BatchNorm statistics recomputed on train batches" in result.stdout
    assert_ok(run_cli("fishnet-average", *paths, "-o", str(tmp_path / "avg.pt")))
    bn, avg = (load_checkpoint(str(tmp_path / n), None).state for n in ("bn.pt", "avg.pt"))
    stats = [k for k in bn if k.endswith("running_mean")]
    assert stats and all(not torch.allclose(bn[k], avg[k]) for k in stats)
    assert all(int(bn[k]) == 3 for k in bn if k.endswith("num_batches_tracked"))  # --bn-batches batches seen
    learned = [k for k in bn if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert [k for k in learned if not torch.equal(bn[k], avg[k])] == []


@pytest.mark.parametrize("args, message", [
    (["--bn-data", "/nonexistent"], "--bn-data /nonexistent is not a directory"),
    (["missing.pt"], "checkpoint not found"),
])
def test_bad_inputs_are_one_line_and_exit_2(tmp_path, capsys, args, message):
    paths = [str(checkpoint(tmp_path / f"{i}.pt", i)) for i in (1, 2)]
    with pytest.raises(SystemExit) as stopped:
        main(["-o", str(tmp_path / "x.pt"), *paths, *args])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "x.pt").exists()


def test_the_output_must_be_a_pt_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["a.pt", "b.pt", "-o", str(tmp_path / "avg.safetensors")])
    assert stopped.value.code == 2 and "the average is a .pt checkpoint" in capsys.readouterr().err


def batch_norm_statistics(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var"))}


def test_batch_norm_is_measured_anew_the_same_on_class_folders_and_on_their_shards(tmp_path):
    """The average of the statistics is not the statistics of the average: they are measured on train batches
    drawn by the seed, from a folder root or a shard root alike."""
    from fishnet_train.apps.averager import BatchNormData
    from fishnet_train.data.shards import write_shards

    paths = [str(checkpoint(tmp_path / f"{i}.pt", seed)) for i, seed in enumerate((1, 2))]
    folder = write_image_folder(tmp_path / "data", ext="jpg")
    write_shards(str(folder), str(tmp_path / "shards"), 1, lambda *a: None)
    measured = {}
    for name, root, seed in (("folder", folder, 0), ("shards", tmp_path / "shards", 0), ("reseeded", folder, 1)):
        data = BatchNormData(str(root), batches=1, batch_size=4, workers=0, seed=seed)
        average(paths, str(tmp_path / f"{name}.pt"), bn_data=data)
        saved = torch.load(tmp_path / f"{name}.pt", weights_only=True)
        assert saved["batch_norm"] == "recomputed"
        measured[name] = batch_norm_statistics(saved["model"])
    average(paths, str(tmp_path / "plain.pt"))
    plain = torch.load(tmp_path / "plain.pt", weights_only=True)
    assert plain["batch_norm"] == "averaged" and plain["num_classes"] == 3
    averaged = batch_norm_statistics(plain["model"])
    assert measured["folder"].keys() == averaged.keys() and len(averaged) > 10
    assert all(not torch.allclose(measured["folder"][k], averaged[k]) for k in averaged)
    assert all(torch.equal(measured["folder"][k], measured["shards"][k]) for k in averaged)
    assert any(not torch.allclose(measured["folder"][k], measured["reseeded"][k]) for k in averaged)
    weights = {k: v for k, v in plain["model"].items() if k not in averaged and v.is_floating_point()}
    recomputed = torch.load(tmp_path / "folder.pt", weights_only=True)["model"]
    assert all(torch.equal(recomputed[k], v) for k, v in weights.items())  # the weights themselves untouched
