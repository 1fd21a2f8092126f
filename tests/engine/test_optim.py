import pytest
import torch

from fishnet_train.engine.optim import LrSchedule, build_sgd, param_groups


def test_step_schedule_at_chosen_steps():
    s = LrSchedule(0.1, steps_per_epoch=10, epochs=100, name="step", milestones=(30, 60, 90), gamma=0.1)
    assert s(0) == pytest.approx(0.1)
    assert s(299) == pytest.approx(0.1)
    assert s(300) == pytest.approx(0.01)
    assert s(600) == pytest.approx(0.001)
    assert s(999) == pytest.approx(0.0001)


def test_cosine_schedule_starts_at_base_halves_midway_and_ends_at_floor():
    s = LrSchedule(0.1, steps_per_epoch=10, epochs=200, name="cosine", min_lr=0.0)
    assert s(0) == pytest.approx(0.1)
    assert s(1000) == pytest.approx(0.05)
    assert s(2000) == pytest.approx(0.0, abs=1e-12)


def test_linear_warmup_then_schedule():
    s = LrSchedule(0.1, steps_per_epoch=10, epochs=10, name="step", milestones=(5,), warmup_epochs=1,
                   warmup_start_factor=0.1)
    assert s(0) == pytest.approx(0.01)
    assert s(5) == pytest.approx(0.055)
    assert s(10) == pytest.approx(0.1)
    c = LrSchedule(0.1, steps_per_epoch=10, epochs=10, name="cosine", warmup_epochs=1)
    assert c(10) == pytest.approx(0.1) and c(100) == pytest.approx(0.0, abs=1e-12)


def test_weight_decay_on_all_parameters_by_default_as_in_the_paper():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    groups = param_groups(model, 1e-4, decay_norm_and_bias=True)
    assert len(groups) == 1 and len(groups[0]["params"]) == 4


def test_norm_and_bias_can_skip_weight_decay():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    decay, no_decay = param_groups(model, 1e-4, decay_norm_and_bias=False)
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 3, 3, 3])]
    assert len(no_decay["params"]) == 3 and no_decay["weight_decay"] == 0.0
    opt = build_sgd(model, 0.1, 0.9, 1e-4, nesterov=True, decay_norm_and_bias=False)
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9


def test_a_backbone_rate_scale_leaves_the_classifier_at_the_full_rate():
    from fishnet_train.engine.optim import set_lr
    from fishnet_train.models import FishNet

    from ..helpers import TINY_FISHNET

    model = FishNet(**TINY_FISHNET, num_classes=3)
    opt = build_sgd(model, 0.1, 0.9, 1e-4, nesterov=False, decay_norm_and_bias=False, backbone_lr_scale=0.1)
    set_lr(opt, 0.5)
    head = {id(p) for p in model.classifier.fc.parameters()}
    for group in opt.param_groups:
        is_head = {id(p) in head for p in group["params"]}
        assert len(is_head) == 1  # no group mixes the classifier with the backbone
        assert group["lr"] == pytest.approx(0.5 if is_head.pop() else 0.05)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_without_a_scale_the_groups_are_the_papers():
    from fishnet_train.models import FishNet

    from ..helpers import TINY_FISHNET

    model = FishNet(**TINY_FISHNET, num_classes=3)
    groups = param_groups(model, 1e-4, decay_norm_and_bias=True, backbone_lr_scale=1.0)
    assert len(groups) == 1 and groups[0]["params"] == list(model.parameters())
