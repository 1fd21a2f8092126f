import pickle
from pathlib import Path

import pytest
import torch

from fishnet_train.errors import CheckpointError
from fishnet_train.models import FishNet, load_weights, ours_to_released, released_to_ours

from ..helpers import TINY_FISHNET as TINY
from ..helpers import PicklePayload, write_crafted_pickle


def randomised(num_classes: int = 5, seed: int = 0) -> FishNet:
    """A model whose every parameter and BN statistic is random, so a wrong map cannot hide."""
    torch.manual_seed(seed)
    model = FishNet(**TINY, num_classes=num_classes)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                scale = torch.rand_like(tensor) * 0.5 + 0.75 if tensor.ndim == 1 else torch.randn_like(tensor) * 0.05
                tensor.copy_(scale)
            else:
                tensor.fill_(7)
    return model.eval()


def save_released_style(model: FishNet, path: Path) -> Path:
    torch.save({"epoch": 100, "arch": "fishnet", "state_dict": ours_to_released(model.state_dict()),
                "best_prec1": 78.14, "optimizer": {"state": {}, "param_groups": []}}, path)
    return path


def test_released_layout_round_trip_gives_identical_outputs(tmp_path):
    source = randomised()
    path = save_released_style(source, tmp_path / "fishnet_ckpt.tar")
    raw = torch.load(path, weights_only=True)
    assert all(k.startswith("module.") for k in raw["state_dict"])
    assert any(k.startswith("module.fish.fish.9.4.1.") for k in raw["state_dict"])
    target = load_weights(FishNet(**TINY, num_classes=5), path).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def test_released_key_names_follow_the_documented_layout():
    keys = set(ours_to_released(FishNet(**TINY, num_classes=5).state_dict()))
    for key in ["module.conv1.0.weight", "module.conv3.1.running_var", "module.fish.fish.0.0.0.bn1.weight",
                "module.fish.fish.0.0.0.shortcut.2.weight", "module.fish.fish.3.0.2.weight",
                "module.fish.fish.3.1.bias", "module.fish.fish.3.3.0.0.weight", "module.fish.fish.3.3.0.3.bias",
                "module.fish.fish.3.3.0.5.weight", "module.fish.fish.4.1.0.conv3.weight",
                "module.fish.fish.9.3.0.weight", "module.fish.fish.9.3.2.weight", "module.fish.fish.9.3.3.bias",
                "module.fish.fish.9.4.1.bias"]:
        assert key in keys, key


def test_mapping_both_ways_is_the_identity():
    state = FishNet(**TINY).state_dict()
    back, unknown = released_to_ours(ours_to_released(state))
    assert unknown == [] and list(back) == list(state)


def test_own_checkpoint_with_ddp_prefix_loads(tmp_path):
    source = randomised()
    path = tmp_path / "ddp.pt"
    torch.save({"model": {"module." + k: v for k, v in source.state_dict().items()}}, path)
    target = load_weights(FishNet(**TINY, num_classes=5), path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def test_wrong_architecture_is_one_readable_error():
    other = FishNet(residual_blocks=(2,) + (1,) * 9, transfer_blocks=(1,) * 6)
    with pytest.raises(CheckpointError, match=r"missing .*another model") as info:
        load_weights(other, FishNet(**TINY).state_dict())
    assert "tail.0.blocks.1" in str(info.value) and "\n" not in str(info.value)


def test_wrong_class_count_names_the_classifier_and_the_fix():
    with pytest.raises(CheckpointError, match="classifier.fc.weight .*num_classes"):
        load_weights(FishNet(**TINY, num_classes=3), FishNet(**TINY, num_classes=5).state_dict())


def test_fine_tuning_loads_everything_but_the_classifier_when_asked():
    source = randomised(num_classes=5)
    target = FishNet(**TINY, num_classes=3)
    fc_before = target.classifier.fc.weight.clone()
    load_weights(target, ours_to_released(source.state_dict()), skip_classifier=True)
    torch.testing.assert_close(target.tail[0].blocks[0].conv1.weight, source.tail[0].blocks[0].conv1.weight)
    torch.testing.assert_close(target.classifier.fc.weight, fc_before)


def test_crafted_pickle_is_refused_and_its_payload_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        path = write_crafted_pickle(tmp_path / f"evil{protocol}.pt", "state_dict", protocol)
        with pytest.raises(CheckpointError, match="--trust"):
            load_weights(FishNet(**TINY), path)
    torch.save({"state_dict": PicklePayload()}, tmp_path / "evil_zip.pt")  # the payload inside a real .pt
    with pytest.raises(CheckpointError, match="not loaded: it would unpickle posix.system"):
        load_weights(FishNet(**TINY), tmp_path / "evil_zip.pt")
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_file_that_is_not_a_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_weights(FishNet(**TINY), path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(FishNet(**TINY), tmp_path / "nope.pt")
