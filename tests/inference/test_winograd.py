import pytest
import torch
import torch.nn.functional as F

from fishnet_train.inference import fuse_for_inference, winograd
from fishnet_train.inference.winograd import WinogradConv2d, winograd_conv3x3, winograd_eligible
from fishnet_train.models import FishNet


def _conv(c_in: int = 128, c_out: int = 128, **kwargs) -> torch.nn.Conv2d:
    torch.manual_seed(0)
    return torch.nn.Conv2d(c_in, c_out, 3, padding=1, **kwargs)


def _reference(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    bias = None if conv.bias is None else conv.bias.double()
    return F.conv2d(x.double(), conv.weight.double(), bias, padding=1)


@pytest.mark.parametrize(
    "shape, layout",
    [
        ((2, 128, 14, 14), torch.channels_last),  # tiles overhang the map and are cropped
        ((1, 128, 28, 28), torch.contiguous_format),  # whole tiles
        ((3, 130, 9, 7), torch.channels_last),  # odd, unequal sides
    ],
)
@pytest.mark.parametrize("bias", [True, False])
def test_winograd_equals_direct_convolution_up_to_float_rounding(shape, layout, bias):
    conv = _conv(shape[1], 136, bias=bias)
    wino = WinogradConv2d(conv)
    x = torch.randn(shape).contiguous(memory_format=layout)
    with torch.no_grad():
        out = winograd_conv3x3(x, wino.weight_tiles, conv.bias, wino.input_transform, wino.output_transform)
    expected = _reference(conv, x)
    assert out.shape == expected.shape and out.is_contiguous(memory_format=layout)
    # fp32 rounding of the transforms: about 1e-5 of the output's scale (the direct
    # convolution's is about 1e-6); a wrong tile or index would be off by the scale itself.
    error = (out.double() - expected).abs().max().item()
    assert error <= 2e-5 * expected.abs().max().item()


def test_winograd_module_uses_winograd_only_where_it_applies():
    conv = _conv()
    wino = WinogradConv2d(conv)
    x = torch.randn(2, 128, 16, 16)
    with torch.no_grad():
        assert wino._applies(x)
        assert not wino._applies(x[:, :, :3, :3])  # too small a map to gain
        assert not wino._applies(x.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not wino._applies(x)
    assert not wino._applies(x)  # autograd is recording: training goes through the convolution


def test_winograd_module_falls_back_to_the_convolution_exactly():
    conv = _conv()
    wino = WinogradConv2d(conv)
    x = torch.randn(2, 128, 16, 16, requires_grad=True)
    out = wino(x)
    torch.testing.assert_close(out, conv(x), rtol=0, atol=0)
    out.sum().backward()  # gradients still reach the convolution's weights
    assert conv.weight.grad is not None
    with torch.no_grad():
        small = x[:, :, :3, :3].detach()
        torch.testing.assert_close(wino(small), conv(small), rtol=0, atol=0)


def test_only_wide_3x3_stride_1_convolutions_are_eligible():
    assert winograd_eligible(_conv())
    assert not winograd_eligible(_conv(64, 128))
    assert not winograd_eligible(_conv(stride=2))
    assert not winograd_eligible(torch.nn.Conv2d(128, 128, 3, padding=2, dilation=2))
    assert not winograd_eligible(torch.nn.Conv2d(128, 128, 1))
    assert not winograd_eligible(_conv().double())
    with pytest.raises(ValueError, match="eligible 3x3"):
        WinogradConv2d(torch.nn.Conv2d(128, 128, 1))


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_fused_model_runs_wide_convolutions_by_winograd_with_the_same_outputs(monkeypatch):
    calls = []
    monkeypatch.setattr(winograd, "winograd_conv3x3", lambda *a: calls.append(1) or winograd_conv3x3(*a))
    torch.manual_seed(0)
    model = FishNet((1,) * 10, (1,) * 6, num_classes=4).eval()
    fused = fuse_for_inference(model)
    plain = fuse_for_inference(model, winograd=False)
    assert sum(isinstance(m, WinogradConv2d) for m in fused.modules()) > 0
    assert not any(isinstance(m, WinogradConv2d) for m in plain.modules())
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(fused(x), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    assert calls  # the 16x16 and 8x8 maps gain; smaller ones run directly
