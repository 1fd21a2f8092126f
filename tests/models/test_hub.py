"""torch.hub entry points (hubconf.py): local weights of every kind, new classifiers, features."""
import importlib.util

import pytest
import torch
from safetensors.torch import save_file

from fishnet_train.models import create_model, ours_to_released

from ..helpers import ROOT


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    return create_model("fishnet99", num_classes=7).eval()


def hub_load(name, **kwargs):
    return torch.hub.load(str(ROOT), name, source="local", trust_repo=True, **kwargs)


def test_the_hub_lists_exactly_the_three_models():
    # torch.hub.list reads GitHub only; this is its rule (public callables of hubconf.py) on the local file.
    spec = importlib.util.spec_from_file_location("hubconf", ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    entries = sorted(f for f in dir(hubconf) if callable(getattr(hubconf, f)) and not f.startswith("_"))
    assert entries == ["fishnet150", "fishnet201", "fishnet99"]


@pytest.mark.parametrize("name, millions", [("fishnet99", 16.6), ("fishnet150", 25.0), ("fishnet201", 44.6)])
def test_each_entry_builds_its_own_network(name, millions):
    """By what it builds, not by its name: the released parameter count and the registry's network."""
    model = hub_load(name)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == millions
    expected = create_model(name)
    assert [(k, v.shape) for k, v in model.state_dict().items()] == \
        [(k, v.shape) for k, v in expected.state_dict().items()]


@pytest.mark.parametrize("layout", ["ours", "released", "safetensors"])
def test_weights_of_each_kind_load_with_identical_outputs(source, tmp_path, layout):
    state = source.state_dict()
    path = tmp_path / ("w.safetensors" if layout == "safetensors" else "w.pt")
    if layout == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({"state_dict": ours_to_released(state)} if layout == "released" else {"model": state}, path)
    model = hub_load("fishnet99", weights=str(path)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert model.num_classes == 7 and torch.equal(model(x), source(x))


def test_another_class_count_starts_a_new_classifier_and_features_drop_it(source, tmp_path):
    torch.save({"model": source.state_dict()}, tmp_path / "w.pt")
    model = hub_load("fishnet99", weights=str(tmp_path / "w.pt"), num_classes=3)
    assert model.num_classes == 3
    assert torch.equal(model.stem.conv1.weight, source.stem.conv1.weight)
    features = hub_load("fishnet99", weights=str(tmp_path / "w.pt"), features_only=True).eval()
    assert not any(k.startswith("model.classifier") for k in features.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        outputs, expected = features(x), source.forward_features(x)
    assert len(outputs) == 4 and all(torch.equal(o, e) for o, e in zip(outputs, expected))
    assert [o.shape[1] for o in outputs] == list(features.feature_channels)


def test_model_options_reach_the_network():
    assert hub_load("fishnet99", drop_rate=0.3).classifier.drop.p == 0.3
