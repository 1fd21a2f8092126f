"""Every user error: exit status 2, one line on stderr saying what and how to fix, no traceback."""
import pickle

import pytest
import torch

from fishnet_train.models import FishNet, create_model

from .helpers import assert_user_error, run_cli, train


@pytest.mark.parametrize("overrides, fragments", [
    (["model=fishnet42"], ["fishnet42", "fishnet99"]),
    (["data.batch_size=0"], ["data.batch_size must be positive"]),
    (["trainer.epochs=-1"], ["trainer.epochs must be positive"]),
    (["data.batch_size=7", "trainer.accum_steps=2"], ["does not split", "multiple of 2"]),
    (["model.num_classes=5"], ["model.num_classes=5", "3 classes", "model.num_classes=3"]),
    (["trainer.amp=fp8"], ["trainer.amp='fp8'", "none, bf16, fp16"]),
    (["data.crop_scale=[0.9,0.1]"], ["data.crop_scale"]),
    (["trainer.resume=/nonexistent/last.pt"], ["/nonexistent/last.pt", "no such file"]),
    (["model.pretrained=/nonexistent/w.pt"], ["/nonexistent/w.pt", "not found"]),
])
def test_bad_config_values(image_folder, tmp_path, overrides, fragments):
    assert_user_error(train(image_folder, tmp_path / "run", *overrides), *fragments)


def test_missing_data_root(tmp_path):
    result = run_cli("fishnet-train", "experiment=demo", f"data.root={tmp_path / 'nope'}", f"hydra.run.dir={tmp_path / 'r'}")
    assert_user_error(result, str(tmp_path / "nope"), "not a directory")


def test_typo_in_a_key_fails_before_anything_runs(image_folder, tmp_path):
    result = train(image_folder, tmp_path / "run", "trainer.epoch=3")
    assert result.returncode != 0
    assert "trainer.epoch" in result.stderr and "Traceback" not in result.stderr


def test_wrong_type_fails_before_anything_runs(image_folder, tmp_path):
    result = train(image_folder, tmp_path / "run", "trainer.epochs=many")
    assert result.returncode != 0
    assert "many" in result.stderr and "Traceback" not in result.stderr


def test_checkpoint_of_another_architecture(image_folder, tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model": FishNet((1,) * 10, (1,) * 6, num_classes=3).state_dict()}, path)
    result = run_cli("fishnet-eval", f"checkpoint={path}", f"data.root={image_folder}", "model.name=fishnet99",
                     f"hydra.run.dir={tmp_path / 'e'}")
    assert_user_error(result, "does not fit the model", "another model")


def test_checkpoint_with_another_class_count(image_folder, tmp_path):
    path = tmp_path / "ten.pt"
    torch.save({"model": create_model("fishnet99", num_classes=10).state_dict()}, path)
    result = run_cli("fishnet-eval", f"checkpoint={path}", f"data.root={image_folder}", f"hydra.run.dir={tmp_path / 'e'}")
    assert_user_error(result, "10 classes", "3 class folders")


def test_file_that_is_not_a_checkpoint(image_folder, tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint")
    result = run_cli("fishnet-eval", f"checkpoint={path}", f"data.root={image_folder}", f"hydra.run.dir={tmp_path / 'e'}")
    assert_user_error(result, str(path), "not a PyTorch checkpoint")


def test_missing_checkpoint_path(image_folder, tmp_path):
    result = run_cli("fishnet-eval", f"checkpoint={tmp_path / 'none.pt'}", f"data.root={image_folder}",
                     f"hydra.run.dir={tmp_path / 'e'}")
    assert_user_error(result, "none.pt", "not found")


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_crafted_pickle_checkpoint_is_refused_and_nothing_runs(image_folder, tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"model": _Payload()}, f)
    result = run_cli("fishnet-eval", f"checkpoint={path}", f"data.root={image_folder}",
                     f"hydra.run.dir={tmp_path / 'e'}", cwd=tmp_path)
    assert_user_error(result, str(path), "--trust")
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_hydra_full_error_shows_the_traceback(tmp_path):
    result = run_cli("fishnet-train", "experiment=demo", f"data.root={tmp_path / 'nope'}",
                     f"hydra.run.dir={tmp_path / 'r'}", env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode != 0 and "Traceback" in result.stderr and "UserError" in result.stderr
