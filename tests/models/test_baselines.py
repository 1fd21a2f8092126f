"""The paper's baselines: torchvision's networks, parameter for parameter, with what the trainer asks of a model."""
import pytest
import torch
import torchvision
from torch import nn

from fishnet_train.config import ModelConfig
from fishnet_train.errors import UserError
from fishnet_train.inference import fuse_for_inference
from fishnet_train.inference.export import check_sizes
from fishnet_train.models import classifier_prefix, create_model, infer_arch, list_models, load_weights
from fishnet_train.training.build import load_pretrained
from fishnet_train.training.optim import param_groups
from fishnet_train.validation import check_model

# torchvision's documented parameter counts at 1000 classes (its weights' num_params).
TORCHVISION_PARAMS = {
    "resnet50": 25_557_032, "resnet101": 44_549_160, "resnet152": 60_192_808, "densenet121": 7_978_856,
    "densenet161": 28_681_000, "densenet169": 14_149_480, "densenet201": 20_013_928,
}


def test_the_registry_holds_the_three_fishnets_and_the_papers_seven_baselines():
    assert set(list_models()) == {"fishnet99", "fishnet150", "fishnet201", *TORCHVISION_PARAMS}


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_each_baseline_has_torchvisions_documented_parameter_count_and_names(name):
    with torch.device("meta"):
        ours = create_model(name).state_dict()
        theirs = getattr(torchvision.models, name)(weights=None).state_dict()
    assert sum(v.numel() for k, v in ours.items() if "running" not in k and "num_batches" not in k) \
        == TORCHVISION_PARAMS[name]
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


@pytest.mark.parametrize("name", ["resnet50", "densenet121"])
@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_torchvisions_weights_give_torchvisions_outputs_and_features_at_strides_4_to_32(name):
    reference = getattr(torchvision.models, name)(weights=None).eval()
    model = load_weights(create_model(name), reference.state_dict()).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
        features = model.forward_features(x)
    assert [f.shape[-1] for f in features] == [16, 8, 4, 2]
    assert [f.shape[1] for f in features] == list(model.feature_channels)
    assert infer_arch(reference.state_dict()) == name


def old_densenet_keys(state):
    """torchvision's released DenseNet files: ``norm.1`` where the module says ``norm1``, and (saved before
    PyTorch 0.4.1) no BatchNorm step counts."""
    renamed = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        for part in ("norm", "relu", "conv"):
            for i in ("1", "2"):
                key = key.replace(f".{part}{i}.", f".{part}.{i}.")
        renamed[key] = value
    return renamed


def test_a_released_densenet_file_with_old_key_names_loads_and_fine_tunes(tmp_path):
    reference = torchvision.models.densenet121(weights=None)
    released = old_densenet_keys(reference.state_dict())
    assert "features.denseblock1.denselayer1.norm.1.weight" in released
    torch.save(released, tmp_path / "densenet121-a639ec97.pth")
    model = create_model("densenet121", num_classes=10)
    assert load_pretrained(model, str(tmp_path / "densenet121-a639ec97.pth"))  # a new 10-class classifier
    ours = model.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in reference.state_dict().items() if not k.startswith("classifier."))
    assert ours["classifier.weight"].shape == (10, 1024)


@pytest.mark.parametrize("name, option", [
    ("resnet50", "grad_checkpointing"), ("densenet121", "grad_checkpointing"),
    ("densenet121", "zero_init_residual"), ("resnet50", "classifier_init"),
])
def test_fishnets_own_options_are_refused_for_a_baseline_in_one_line(name, option):
    value = "released" if option == "classifier_init" else True
    with pytest.raises(UserError, match=rf"model.{option}.* {name} "):
        check_model(ModelConfig(name=name, **{option: value}), train=True)
    with pytest.raises(ValueError):
        create_model(name, **{option: value})
    check_model(ModelConfig(name="fishnet99", **{option: value}), train=True)


def test_zero_init_residual_and_a_zero_classifier_reach_the_resnet():
    model = create_model("resnet50", zero_init_residual=True, classifier_init="zeros")
    assert all(torch.count_nonzero(block.bn3.weight) == 0 for layer in (model.layer1, model.layer4) for block in layer)
    assert torch.count_nonzero(model.fc.weight) == 0 and torch.count_nonzero(model.fc.bias) == 0
    assert torch.count_nonzero(create_model("resnet50").layer1[0].bn3.weight) > 0


def test_drop_rate_drops_the_classifiers_input_in_training_only():
    model = create_model("densenet121", num_classes=4, drop_rate=0.9)
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.classifier.train()
        assert not torch.equal(model(x), model(x))
    assert set(model.state_dict()) == set(create_model("densenet121", num_classes=4).state_dict())


@pytest.mark.parametrize("name", ["resnet50", "densenet121"])
def test_freeze_backbone_trains_the_classifier_alone_and_keeps_batchnorm_statistics(name):
    model = create_model(name, num_classes=3).freeze_backbone().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    optimizer.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {f"{classifier_prefix(name)}weight", f"{classifier_prefix(name)}bias"}


def test_the_backbone_rate_spares_the_baselines_classifier():
    model = create_model("resnet50", num_classes=3)
    groups = param_groups(model, 1e-4, False, backbone_lr_scale=0.1)
    full_rate = {id(p) for g in groups if g["lr_scale"] == 1.0 for p in g["params"]}
    assert full_rate == {id(model.fc.weight), id(model.fc.bias)}


@pytest.mark.parametrize("name, folded", [("resnet50", 53), ("densenet121", 59)])  # DenseNet: stem, bottlenecks
def test_inference_folds_every_batchnorm_that_follows_a_convolution(name, folded):
    model = create_model(name, num_classes=5).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    fused = fuse_for_inference(model)
    count = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert count - sum(isinstance(m, nn.BatchNorm2d) for m in fused.modules()) == folded
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-4)


def test_the_export_check_sizes_follow_each_networks_rounding():
    """ResNet's padded stride-2 convolutions round up: at 33-60 px its deepest features are not 1x1."""
    resnet, densenet = create_model("resnet50"), create_model("densenet121")
    assert check_sizes(32, resnet) == [(2, 32), (3, 32)]
    assert check_sizes(48, resnet) == [(2, 48), (3, 64)]
    assert check_sizes(48, densenet) == [(2, 48), (3, 40)]


def test_convert_takes_torchvisions_files_to_ours_and_refuses_them_the_released_layout(tmp_path):
    from fishnet_train.cli.convert import convert

    reference = torchvision.models.densenet121(weights=None)
    torch.save(old_densenet_keys(reference.state_dict()), tmp_path / "densenet121-a639ec97.pth")
    assert convert(str(tmp_path / "densenet121-a639ec97.pth"), str(tmp_path / "ours.pt"), "ours") == "densenet121"
    written = torch.load(tmp_path / "ours.pt", weights_only=True)
    assert written["arch"] == "densenet121" and written["num_classes"] == 1000
    assert torch.equal(written["model"]["features.denseblock1.denselayer1.norm1.weight"],
                       reference.state_dict()["features.denseblock1.denselayer1.norm1.weight"])
    with pytest.raises(UserError, match="the released layout is FishNet's"):
        convert(str(tmp_path / "ours.pt"), str(tmp_path / "released.pt"), "released")
    assert not (tmp_path / "released.pt").exists()


def test_the_config_checks_know_the_registrys_baselines_and_families():
    from fishnet_train.models import model_info
    from fishnet_train.validation import BASELINES

    assert BASELINES == {name: model_info(name).family for name in list_models() if not name.startswith("fishnet")}
