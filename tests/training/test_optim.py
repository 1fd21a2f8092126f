import pytest
import torch

from fishnet_train.training.optim import LrSchedule, build_sgd, param_groups


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
    from fishnet_train.models import FishNet
    from fishnet_train.training.optim import set_lr

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


def _two_params():
    """A weight (decayed) and a bias-like vector (not decayed, as with decay_norm_and_bias=false)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    grads = [torch.randn_like(p) for p in model.parameters()] + [torch.randn_like(p) for p in model.parameters()]
    return model, grads


def _run(optimizer, model, grads):
    params = list(model.parameters())
    for step in range(2):
        for p, g in zip(params, grads[step * 2:step * 2 + 2]):
            p.grad = g.clone()
        optimizer.step()
    return [p.detach().clone() for p in params]


def _optimizer(name, model, **kw):
    from fishnet_train.config import OptimConfig
    from fishnet_train.training.optim import build_optimizer

    return build_optimizer(model, OptimConfig(name=name, decay_norm_and_bias=False, **kw))


def test_lamb_follows_the_published_update_with_global_clipping():
    """You et al. 2019 (Algorithm 2) with NVIDIA's global gradient clipping, as timm implements it;
    the trust ratio applies to decayed parameters only."""
    model, grads = _two_params()
    w = [p.detach().clone() for p in model.parameters()]
    lr, wd, b1, b2, eps = 0.01, 0.1, 0.9, 0.999, 1e-6
    got = _run(_optimizer("lamb", model, lr=lr, weight_decay=wd, max_grad_norm=1.0), model, grads)
    m, v = [torch.zeros_like(p) for p in w], [torch.zeros_like(p) for p in w]
    for t in (1, 2):
        g = grads[(t - 1) * 2:(t - 1) * 2 + 2]
        clip = max(1.0, torch.cat([x.flatten() for x in g]).norm().item() / 1.0)
        for i in range(2):
            gi = g[i] / clip
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
            r = (m[i] / (1 - b1**t)) / ((v[i] / (1 - b2**t)).sqrt() + eps)
            if i == 0:  # the weight: decayed and adapted
                r = r + wd * w[i]
                r = r * (w[i].norm() / r.norm())
            w[i] = w[i] - lr * r
    for a, b in zip(got, w):
        torch.testing.assert_close(a, b)


def test_lars_follows_the_published_update():
    """You et al. 2017: local rate eta * |w| / (|g| + beta * |w|) on decayed parameters, then SGD momentum."""
    model, grads = _two_params()
    w = [p.detach().clone() for p in model.parameters()]
    lr, wd, mom, eta = 0.5, 1e-3, 0.9, 0.001
    got = _run(_optimizer("lars", model, lr=lr, weight_decay=wd, momentum=mom, trust_coefficient=eta), model, grads)
    buf: list = [None, None]
    for t in (0, 1):
        g = grads[t * 2:t * 2 + 2]
        for i in range(2):
            u = g[i]
            if i == 0:
                u = (u + wd * w[i]) * (eta * w[i].norm() / (g[i].norm() + wd * w[i].norm() + 1e-8))
            buf[i] = u.clone() if buf[i] is None else mom * buf[i] + u
            w[i] = w[i] - lr * buf[i]
    for a, b in zip(got, w):
        torch.testing.assert_close(a, b)


def test_adamw_decays_the_weights_only_decoupled_from_the_gradient():
    model, grads = _two_params()
    optimizer = _optimizer("adamw", model, lr=0.01, weight_decay=0.05)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]
    reference_model, _ = _two_params()
    reference = torch.optim.AdamW([{"params": [reference_model.weight], "weight_decay": 0.05},
                                   {"params": [reference_model.bias], "weight_decay": 0.0}], lr=0.01)
    for a, b in zip(_run(optimizer, model, grads), _run(reference, reference_model, grads)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["lamb", "lars"])
def test_lamb_and_lars_adapt_the_decayable_groups_even_without_weight_decay(name):
    decayed = _optimizer(name, _two_params()[0], weight_decay=0.0).param_groups
    assert [g["always_adapt"] for g in decayed] == [True, False]  # the weight; not the bias
    assert not any(g["always_adapt"] for g in _optimizer(name, _two_params()[0], weight_decay=0.1).param_groups)
