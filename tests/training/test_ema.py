"""The weight average: torch's AveragedModel EMA, every N steps, copying through the warmup, saved whole."""
import torch

from fishnet_train.models import FishNet
from fishnet_train.training.ema import WeightAverage

from ..helpers import TINY_FISHNET


def _tiny():
    torch.manual_seed(0)
    return FishNet(**TINY_FISHNET, num_classes=3)


def _perturb(model, step):
    """A stand-in for a training step: parameters and BN statistics move."""
    with torch.no_grad():
        for t in list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]:
            t.add_(0.01 * step)


def test_the_average_follows_the_ema_formula_every_n_steps_from_the_first_update_after_the_warmup():
    model = _tiny()
    ema = WeightAverage(model, decay=0.9, every_steps=2, warmup_steps=2)
    # A weight and a BN statistic: both are averaged (use_buffers, as torchvision's references do).
    names = [next(iter(model.state_dict())), next(k for k in model.state_dict() if k.endswith("running_mean"))]
    expected = {n: model.state_dict()[n].clone() for n in names}
    for step in range(1, 9):
        _perturb(model, step)
        ema.after_step(model, step)
        for n in names:
            current = model.state_dict()[n]
            if step in (2, 4):
                # A copy within the warmup (steps 1-2), and at the first update after it: torchvision
                # resets the count after each update within the warmup.
                expected[n] = current.clone()
            elif step % 2 == 0:
                expected[n] = 0.9 * expected[n] + 0.1 * current
            torch.testing.assert_close(ema.model.state_dict()[n], expected[n])
    assert ema.state()["ema_updates"] == 3  # steps 4 (the copy), 6, 8


def test_the_saved_state_restores_the_average_and_its_count():
    model = _tiny()
    ema = WeightAverage(model, decay=0.5, every_steps=1)
    for step in range(1, 4):
        _perturb(model, step)
        ema.after_step(model, step)
    restored = WeightAverage(_tiny(), decay=0.5, every_steps=1)
    restored.load_state(ema.state())
    for key, value in ema.model.state_dict().items():
        assert torch.equal(value, restored.model.state_dict()[key]), key
    _perturb(model, 4)
    ema.after_step(model, 4)
    restored.after_step(model, 4)  # a restored count of 3: an average, not the first update's copy
    for key, value in ema.model.state_dict().items():
        assert torch.equal(value, restored.model.state_dict()[key]), key
