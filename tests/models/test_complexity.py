"""Counting a model's multiply-accumulates runs it once and changes nothing the run holds."""
import copy

import torch

from fishnet_train.models import FishNet
from fishnet_train.models.complexity import multiply_accumulates

from ..helpers import TINY_FISHNET


def test_counting_leaves_the_weights_statistics_mode_and_random_stream_as_they_were():
    model = FishNet(**TINY_FISHNET, num_classes=3, drop_rate=0.5).train()
    before = copy.deepcopy(model.state_dict())
    torch.manual_seed(0)
    rng = torch.get_rng_state()
    macs = multiply_accumulates(model, (32, 32))
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN running stats too
    assert macs == multiply_accumulates(model.eval(), (32, 32)) > 0 and not model.training


def test_the_count_grows_with_the_image_as_convolutions_do():
    model = FishNet(**TINY_FISHNET, num_classes=3)
    small, large = multiply_accumulates(model, (64, 64)), multiply_accumulates(model, (128, 128))
    assert 3.9 < large / small < 4.0  # the convolutions scale with the area; the classifier does not


def test_the_count_is_torchs_flop_counter_halved():
    from torch.utils.flop_counter import FlopCounterMode

    model = FishNet(**TINY_FISHNET, num_classes=5, drop_rate=0.1).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 96, 64))
    assert multiply_accumulates(model, (96, 64)) == counter.get_total_flops() // 2
    assert not model._forward_hooks and not any(m._forward_hooks for m in model.modules())  # the hooks are gone
