import pytest
import torch

from fishnet_train.models import FishNet, create_model, list_models, model_info
from fishnet_train.models.blocks import Bottleneck

from ..helpers import TINY_FISHNET as TINY


def tiny(**kwargs) -> FishNet:
    return FishNet(**TINY, **kwargs)


def test_unknown_model_name_lists_known_names():
    with pytest.raises(ValueError, match="densenet121, .*, fishnet150, fishnet201, fishnet99, resnet101"):
        create_model("fishnet42")


@pytest.mark.parametrize("name", list_models())
def test_parameter_count_is_exactly_the_released_count(name):
    with torch.device("meta"):
        model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == model_info(name).params


@pytest.mark.parametrize("name", list_models())
def test_macs_at_224_within_one_percent_of_published(name):
    from fishnet_train.models.complexity import multiply_accumulates

    with torch.device("meta"):
        model = create_model(name)
    assert multiply_accumulates(model, (224, 224)) / 1e9 == pytest.approx(model_info(name).gmacs, rel=0.01)


def test_output_and_feature_shapes_at_224():
    model = tiny(num_classes=7).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model(x)
    assert logits.shape == (1, 7)
    assert [f.shape[1] for f in features] == list(model.feature_channels) == [320, 832, 1600, 2112]
    assert [f.shape[-1] for f in features] == [56, 28, 14, 7]  # strides 4, 8, 16, 32


@pytest.mark.parametrize("size", [(64, 64), (225, 300), (512, 384), (32, 32), (33, 47)])
def test_any_input_of_at_least_32_pixels_works(size):
    model = tiny(num_classes=5).eval()
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, 3, *size))
        logits = model.classifier(features[-1])
    assert logits.shape == (1, 5)

    def half(n):  # a 3x3 stride-2 conv or pool with padding 1
        return (n - 1) // 2 + 1

    assert tuple(features[0].shape[-2:]) == (half(half(size[0])), half(half(size[1])))
    for small, big in zip(features[1:], features[:-1]):
        assert small.shape[-2] == big.shape[-2] // 2 and small.shape[-1] == big.shape[-1] // 2


def test_inputs_below_32_pixels_are_refused_clearly():
    with pytest.raises(ValueError, match="at least 32x32"):
        tiny().eval()(torch.randn(1, 3, 31, 64))


def test_up_block_sums_adjacent_channel_pairs_as_residual():
    block = Bottleneck(8, 4, mode="up", k=2)
    for conv in (block.conv1, block.conv2, block.conv3):
        torch.nn.init.zeros_(conv.weight)
    x = torch.randn(2, 8, 5, 5)
    expected = x[:, 0::2] + x[:, 1::2]
    torch.testing.assert_close(block(x), expected)


def _bottleneck_by_definition(block: Bottleneck, x: torch.Tensor) -> torch.Tensor:
    out = block.conv1(torch.relu(block.bn1(x)))
    out = block.conv2(torch.relu(block.bn2(out)))
    out = block.conv3(torch.relu(block.bn3(out)))
    if block.shortcut is not None:
        return out + block.shortcut(x)
    return out + x.reshape(x.shape[0], -1, block.k, *x.shape[2:]).sum(2)  # channels summed in groups of k


def test_block_output_and_gradients_equal_the_definition():
    torch.manual_seed(0)
    block = Bottleneck(8, 16)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    reference = _bottleneck_by_definition(block, x)
    (grad_ref,) = torch.autograd.grad(reference.square().sum(), x)
    out = block(x)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    torch.testing.assert_close(out, reference)
    torch.testing.assert_close(grad, grad_ref)


@pytest.mark.parametrize("mode, k", [("norm", 1), ("up", 2)])
def test_inference_sums_the_residual_in_place_with_the_same_result(mode, k):
    torch.manual_seed(0)
    block = Bottleneck(16, 16 // k, mode=mode, k=k).eval()
    x = torch.randn(2, 16, 6, 6)
    with torch.inference_mode():
        out, reference = block(x), _bottleneck_by_definition(block, x)
    torch.testing.assert_close(out, reference, rtol=0, atol=0)


def test_block_sums_the_residual_in_float32_under_bf16_autocast():
    torch.manual_seed(0)
    block = Bottleneck(8, 8).eval()
    x = torch.randn(2, 8, 6, 6)  # the residual stays float32 while the convolutions run in bf16
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        out, reference = block(x), _bottleneck_by_definition(block, x)
    assert out.dtype == reference.dtype == torch.float32
    torch.testing.assert_close(out, reference)


def test_norm_block_projects_only_when_channels_change():
    assert Bottleneck(8, 8).shortcut is None
    assert Bottleneck(8, 16).shortcut is not None


def test_released_initialisation():
    model = tiny()
    conv = model.tail[0].blocks[0].conv2  # 3x3, 32 output channels
    expected_std = (2.0 / (3 * 3 * conv.out_channels)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.1)
    bn = model.tail[0].blocks[0].bn1
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


def test_zero_init_residual_makes_every_block_start_as_its_shortcut():
    torch.manual_seed(0)
    plain, zeroed = tiny(), tiny(zero_init_residual=True)
    blocks = [m for m in zeroed.modules() if isinstance(m, Bottleneck)]
    assert blocks and all(torch.all(b.conv3.weight == 0) for b in blocks)
    assert all(b.conv3.weight.abs().sum() > 0 for b in plain.modules() if isinstance(b, Bottleneck))
    x = torch.randn(2, blocks[0].bn1.num_features, 8, 8)
    with torch.no_grad():
        assert torch.equal(blocks[0].eval()(x), blocks[0]._residual(x))
    # Only the residual branches' last layers change: the rest draws as the released init does.
    torch.manual_seed(1)
    a = tiny().state_dict()
    torch.manual_seed(1)
    b = tiny(zero_init_residual=True).state_dict()
    assert {k for k in a if not torch.equal(a[k], b[k])} == {
        n + ".conv3.weight" for n, m in zeroed.named_modules() if isinstance(m, Bottleneck)}


def test_the_classifier_std_is_the_released_one_at_1000_classes_and_capped_below():
    torch.manual_seed(0)
    auto = tiny(num_classes=1000)
    torch.manual_seed(0)
    released = tiny(num_classes=1000, classifier_init="released")
    assert all(torch.equal(a, b) for a, b in zip(auto.state_dict().values(), released.state_dict().values()))
    many = tiny(num_classes=2000).classifier.fc.weight
    assert many.std().item() == pytest.approx((2.0 / 2000) ** 0.5, rel=0.05)  # above 1000: the released rule
    few = tiny(num_classes=10).classifier.fc.weight
    assert few.std().item() == pytest.approx((2.0 / 1000) ** 0.5, rel=0.05)  # released: sqrt(2 / 10), 10x wider
    assert tiny(num_classes=10, classifier_init="released").classifier.fc.weight.std().item() == pytest.approx(
        (2.0 / 10) ** 0.5, rel=0.05)
    fc = tiny(num_classes=10, classifier_init="zeros").classifier.fc
    assert not fc.weight.any() and not fc.bias.any()


def test_a_frozen_backbone_trains_only_the_classifier_and_keeps_its_statistics():
    torch.manual_seed(0)
    model = tiny(num_classes=3, drop_rate=0.5).freeze_backbone()
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["classifier.fc.weight", "classifier.fc.bias"]
    assert not model.stem.training and not model.classifier.reduce.training  # at once, not only after .train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    assert model.classifier.drop.training and not model.classifier.reduce.training and not model.stem.training
    model(torch.randn(4, 3, 64, 64)).sum().backward()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # no BN statistic moved
    assert model.classifier.fc.weight.grad is not None and model.stem.conv1.weight.grad is None


def test_seeded_construction_and_forward_are_deterministic():
    torch.manual_seed(3)
    a = tiny(num_classes=4)
    torch.manual_seed(3)
    b = tiny(num_classes=4)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_grad_checkpointing_gives_same_outputs_gradients_and_bn_statistics():
    torch.manual_seed(0)
    plain = tiny(num_classes=3)
    checkpointed = tiny(num_classes=3, grad_checkpointing=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    outputs = []
    for model in (plain, checkpointed):
        model.train()
        out = model(x)
        out.square().sum().backward()
        outputs.append(out)
    torch.testing.assert_close(outputs[0], outputs[1])
    for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)
    for (name, a), b in zip(plain.named_buffers(), checkpointed.buffers()):
        torch.testing.assert_close(a, b, msg=name)  # running stats updated once, not twice


def test_drop_rate_applies_dropout_before_the_classifier_in_training_only():
    torch.manual_seed(0)
    model = tiny(num_classes=3, drop_rate=0.5)
    assert model.classifier.drop.p == 0.5
    features = model.forward_features(torch.randn(2, 3, 64, 64))[-1].detach()
    model.classifier.train()
    assert not torch.equal(model.classifier(features), model.classifier(features))  # fresh masks
    model.classifier.eval()
    torch.testing.assert_close(model.classifier(features), model.classifier(features))


def test_channels_last_gives_the_same_outputs():
    model = tiny(num_classes=3).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        out = model_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-4)


@pytest.mark.slow  # several seconds: make test keeps to its 5 minutes
def test_compiles_as_one_graph_without_breaks():
    model = tiny(num_classes=3).eval()
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # fullgraph: a break is an error
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))
