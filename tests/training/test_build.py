"""Choices made from the options and the device before training starts."""
import pytest
import torch

from fishnet_train.errors import UserError
from fishnet_train.training import build
from fishnet_train.training.build import effective_amp


def test_fp16_falls_back_to_fp32_on_the_cpu_and_bf16_stays():
    assert effective_amp("fp16", torch.device("cpu")) == "none"
    assert effective_amp("bf16", torch.device("cpu")) == "bf16"


def test_emulated_bf16_does_not_count_as_native(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert not build.native_bf16(torch.device("cuda", 0))


def test_bf16_on_a_gpu_without_native_bf16_is_one_line(monkeypatch):
    monkeypatch.setattr(build, "native_bf16", lambda device: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-32GB")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    with pytest.raises(UserError, match=r"^trainer.amp=bf16 but Tesla V100-SXM2-32GB \(compute capability 7.0\) "
                                        r"has no native bf16; use trainer.amp=fp16 or none$"):
        effective_amp("bf16", torch.device("cuda", 0))


def test_bf16_on_a_gpu_with_it_is_kept(monkeypatch):
    monkeypatch.setattr(build, "native_bf16", lambda device: True)
    assert effective_amp("bf16", torch.device("cuda", 0)) == "bf16"


def test_zero_init_residual_reaches_the_model():
    from fishnet_train.config import ModelConfig
    from fishnet_train.models.blocks import Bottleneck

    def last_convs(zero_init_residual: bool) -> list:
        model = build.build_model(ModelConfig(name="fishnet99", zero_init_residual=zero_init_residual), 3)
        return [m.conv3.weight for m in model.modules() if isinstance(m, Bottleneck)]

    assert all(w.any() for w in last_convs(False))
    assert all(not w.any() for w in last_convs(True))
