"""``train_one_epoch`` called as it is, on a few batches held in memory."""
import copy

import pytest
import torch
import torch.nn.functional as F

from fishnet_train.config import LossConfig
from fishnet_train.data import BatchPreprocess
from fishnet_train.models import FishNet
from fishnet_train.processes.signals import Preempted, StopRequest
from fishnet_train.training.checkpoint import Progress
from fishnet_train.training.loop import LoopOptions, StepParts, TrainingStopped, train_one_epoch
from fishnet_train.training.optim import LrSchedule, build_sgd

from ..helpers import TINY_FISHNET

CPU = torch.device("cpu")
MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


def parts(lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 1e-4, steps: int = 3) -> StepParts:
    torch.manual_seed(0)
    model = FishNet(**TINY_FISHNET, num_classes=3)
    optimizer = build_sgd(model, lr, momentum, weight_decay, nesterov=False, decay_norm_and_bias=True)
    return StepParts(model, model, optimizer, torch.amp.GradScaler("cpu", enabled=False), LrSchedule(lr, steps, 1),
                     BatchPreprocess(MEAN, STD, CPU, channels_last=False), CPU)


def batches(n: int = 3, size: int = 32, batch: int = 4, skipped: tuple = ()) -> list:
    g = torch.Generator().manual_seed(1)
    return [(torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=g),
             torch.randint(0, 3, (batch,), generator=g), torch.zeros(batch, 3), list(skipped)) for _ in range(n)]


def loop(**kwargs) -> LoopOptions:
    return LoopOptions(**{"steps_per_epoch": 3, "epochs": 1, "global_batch": 4, **kwargs})


def test_three_in_memory_batches_make_three_steps_and_their_statistics():
    p = parts()
    before = copy.deepcopy(p.model.state_dict())
    progress = Progress()
    seen = []
    stats = train_one_epoch(p, batches(skipped=("a.jpg: empty",)), progress, loop(),
                            after_step=lambda q: seen.append(q.step))
    assert (stats.steps, progress.step, progress.epoch_step, seen) == (3, 3, 3, [1, 2, 3])
    assert stats.skipped == ["a.jpg: empty"] * 3  # this process's replacements, one per batch here
    assert stats.loss > 0 and stats.images_per_sec > 0 and 0 <= stats.data_wait <= 1
    assert any(not torch.equal(before[k], v) for k, v in p.model.state_dict().items())


def test_the_epoch_loss_is_the_mean_of_its_step_losses():
    p = parts(lr=0.0)  # the weights stay; train-mode BN uses each batch's own statistics
    data = batches()
    model = copy.deepcopy(p.model).train()
    expected = [F.cross_entropy(model(p.preprocess(x)), y).item() for x, y, _, _ in data]
    stats = train_one_epoch(p, data, Progress(), loop())
    assert stats.loss == pytest.approx(sum(expected) / 3, rel=1e-5)


def test_an_epoch_resumed_mid_way_runs_only_its_remaining_steps():
    progress = Progress(epoch=0, epoch_step=2, step=2)
    stats = train_one_epoch(parts(), batches(), progress, loop())
    assert (stats.steps, progress.step, progress.epoch_step) == (1, 3, 3)


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_step_loss_is_the_label_smoothed_cross_entropy_of_the_batch(smoothing):
    p = parts()
    data = batches(n=1)
    images, targets, _, _ = data[0]
    reference = copy.deepcopy(p.model).train()
    expected = F.cross_entropy(reference(p.preprocess(images)), targets, label_smoothing=smoothing)
    stats = train_one_epoch(p, data, Progress(), loop(steps_per_epoch=1, loss=LossConfig(label_smoothing=smoothing)))
    assert stats.loss == pytest.approx(expected.item(), rel=1e-5)


def test_clip_grad_norm_bounds_the_update_of_plain_sgd():
    deltas = {}
    for clip in (None, 1e-3):
        p = parts(lr=1.0, momentum=0.0, weight_decay=0.0)
        before = [q.detach().clone() for q in p.model.parameters()]
        train_one_epoch(p, batches(n=1), Progress(), loop(steps_per_epoch=1, clip_grad_norm=clip))
        deltas[clip] = torch.cat([(q.detach() - b).flatten() for q, b in zip(p.model.parameters(), before)]).norm()
    assert deltas[1e-3] <= 1e-3 * 1.001
    assert deltas[None] > 1e-2  # so the bound above is the clipping's doing


def test_lighting_draws_reach_the_preprocessing_only_when_on():
    draws = batches(n=1)
    draws[0] = (*draws[0][:2], torch.full((4, 3), 3.0), [])
    losses = [train_one_epoch(parts(), draws, Progress(), loop(steps_per_epoch=1, lighting=on)).loss
              for on in (False, True)]
    assert losses[0] != losses[1]


def _poisoned(p: StepParts) -> StepParts:
    with torch.no_grad():
        p.model.classifier.fc.bias.fill_(float("nan"))
    return p


def test_non_finite_loss_stops_the_run_naming_the_step():
    with pytest.raises(TrainingStopped, match=r"loss became nan at step 1 \(epoch 1\).*trainer.nan_policy=skip"):
        train_one_epoch(_poisoned(parts()), batches(), Progress(), loop())


def test_non_finite_loss_with_skip_drops_the_steps_and_warns(caplog, tmp_path):
    from fishnet_train.reporting import Reporter

    p = _poisoned(parts())
    weights = copy.deepcopy(p.model.stem.conv1.weight.detach())
    with caplog.at_level("WARNING"):
        stats = train_one_epoch(p, batches(), Progress(), loop(nan_policy="skip"),
                                reporter=Reporter(str(tmp_path), active=True))
    assert torch.equal(p.model.stem.conv1.weight, weights)  # no step was taken
    assert stats.loss == 0.0 and stats.steps == 3
    assert sum("step skipped" in r.getMessage() for r in caplog.records) == 3


def test_a_stop_signal_saves_after_the_current_step_then_raises_preempted():
    stop = StopRequest()
    stop.signum = 15  # as its signal handler records it
    saved = []
    progress = Progress()
    with pytest.raises(Preempted, match="epoch 1, step 1"):
        train_one_epoch(parts(), batches(), progress, loop(), stop=stop, save=lambda: saved.append(progress.step))
    assert saved == [1]


def test_a_ctrl_c_that_python_dropped_interrupts_before_the_next_step_without_saving():
    stop = StopRequest()
    stop.interrupted = True  # its handler ran, but the KeyboardInterrupt was dropped in a finalizer
    p, saved = parts(), []
    weights = p.model.stem.conv1.weight.detach().clone()
    with pytest.raises(KeyboardInterrupt):
        train_one_epoch(p, batches(), Progress(), loop(), stop=stop, save=lambda: saved.append(1))
    assert saved == [] and torch.equal(p.model.stem.conv1.weight, weights)


def test_checkpoint_every_steps_saves_within_the_epoch_not_at_its_end():
    saved = []
    progress = Progress()
    train_one_epoch(parts(steps=4), batches(n=4), progress, loop(steps_per_epoch=4, checkpoint_every_steps=2),
                    save=lambda: saved.append(progress.step))
    assert saved == [2]  # the end of the epoch is the trainer's own save


def test_accumulation_takes_accum_steps_micro_batches_per_step():
    progress = Progress()
    stats = train_one_epoch(parts(), batches(n=6), progress, loop(accum_steps=2, global_batch=8))
    assert (stats.steps, progress.step) == (3, 3)


def test_each_step_agrees_on_non_finite_losses_and_stop_signals_in_one_all_reduce(monkeypatch):
    import fishnet_train.training.guards as guards
    import fishnet_train.training.loop as loop_module

    reduced = []
    monkeypatch.setattr(guards, "all_reduce_max", lambda t: reduced.append(("max", t.numel())) or t)
    monkeypatch.setattr(loop_module, "all_reduce_mean", lambda t: reduced.append(("mean", t.numel())) or t)
    train_one_epoch(parts(), batches(), Progress(), loop(), stop=StopRequest())
    # One 3-value all-reduce per step (non-finite loss, stop flag, fp16 scale), one mean of the loss at the end.
    assert reduced == [("max", 3)] * 3 + [("mean", 1)]


def test_a_stop_signal_on_any_rank_reaches_the_step_through_the_agreement(monkeypatch):
    import fishnet_train.training.guards as guards

    # Another rank got the signal: the all-reduced maximum carries its flag to this one.
    monkeypatch.setattr(guards, "all_reduce_max", lambda t: torch.maximum(t, torch.tensor([0.0, 1.0, 0.0])))
    saved = []
    with pytest.raises(Preempted, match="epoch 1, step 1"):
        train_one_epoch(parts(), batches(), Progress(), loop(), stop=StopRequest(), save=lambda: saved.append(1))
    assert saved == [1]


def _fp16_scaler_parts(poisoned: bool) -> StepParts:
    p = parts()
    p = StepParts(p.model, p.step_model, p.optimizer, torch.amp.GradScaler("cpu", init_scale=2.0**16),
                  p.schedule, p.preprocess, CPU)
    return _poisoned(p) if poisoned else p


@pytest.fixture
def diverged_after_3(monkeypatch):
    import fishnet_train.training.guards as guards

    monkeypatch.setattr(guards, "FP16_DIVERGED_STEPS", 3)  # 20 in a run: the counting is the same
    return 3


def test_an_fp16_run_whose_scaler_skips_every_step_stops_as_diverged(diverged_after_3):
    steps = diverged_after_3 + 2
    with pytest.raises(TrainingStopped, match=r"fp16: the gradient scaler skipped 3 steps in a "
                                              r"row by step 4 .*the last good checkpoint is kept"):
        train_one_epoch(_fp16_scaler_parts(poisoned=True), batches(n=steps, size=32, batch=2), Progress(),
                        loop(steps_per_epoch=steps, global_batch=2))


def test_an_fp16_run_with_nan_policy_skip_goes_on_and_warns_once_per_streak(caplog, tmp_path, diverged_after_3):
    from fishnet_train.reporting import Reporter

    steps = 2 * diverged_after_3 + 2
    with caplog.at_level("WARNING"):
        stats = train_one_epoch(_fp16_scaler_parts(poisoned=True), batches(n=steps, size=32, batch=2), Progress(),
                                loop(steps_per_epoch=steps, global_batch=2, nan_policy="skip"),
                                reporter=Reporter(str(tmp_path), active=True))
    assert stats.steps == steps
    assert sum("has diverged" in r.getMessage() for r in caplog.records) == 2  # at 3 and at 6 skips in a row


def test_an_fp16_run_that_trains_is_not_called_diverged(diverged_after_3):
    steps = 3 * diverged_after_3
    stats = train_one_epoch(_fp16_scaler_parts(poisoned=False), batches(n=steps), Progress(),
                            loop(steps_per_epoch=steps))
    assert stats.steps == steps and stats.loss > 0


@pytest.mark.parametrize("where", ["preprocess", "optimizer"])
def test_out_of_gpu_memory_outside_forward_and_backward_is_the_same_one_line(where, monkeypatch):
    from fishnet_train.errors import UserError

    p = parts()

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    if where == "preprocess":
        p = StepParts(p.model, p.step_model, p.optimizer, p.scaler, p.schedule, out_of_memory, CPU)
    else:
        monkeypatch.setattr(p.optimizer, "step", out_of_memory)
    with pytest.raises(UserError, match=r"^out of GPU memory at 4 images per device; .*trainer.accum_steps \(now 1\)"):
        train_one_epoch(p, batches(), Progress(), loop())


def test_a_resumed_epoch_reports_loss_and_speed_over_all_of_its_steps():
    # Two of three steps ran before the resume: their loss sum (2 x 5.0) and their 100 seconds.
    progress = Progress(epoch=0, epoch_step=2, step=2, epoch_loss_sum=10.0, epoch_seconds=100.0, epoch_data_wait=50.0)
    p = parts(lr=0.0)
    data = batches(n=1)
    model = copy.deepcopy(p.model).train()
    last = F.cross_entropy(model(p.preprocess(data[0][0])), data[0][1]).item()
    stats = train_one_epoch(p, data, progress, loop())
    assert stats.steps == 1
    assert stats.loss == pytest.approx((10.0 + last) / 3, rel=1e-5)
    assert stats.images_per_sec < 3 * 4 / 100.0  # 12 images over more than 100 s
    assert 0.45 < stats.data_wait < 0.5
    assert progress.epoch_seconds > 100.0 and progress.epoch_loss_sum == pytest.approx(10.0 + last, rel=1e-5)


def _parameters(model) -> list:
    return [q.detach().clone() for q in model.parameters()]


def _gradients(model, images, targets, preprocess) -> list:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(preprocess(images)), targets).backward()
    return [q.grad.clone() for q in model.parameters()]


def test_accumulating_two_micro_batches_steps_by_the_mean_of_their_gradients():
    """Plain SGD at rate 1: the step is minus the mean of the micro-batches' gradients, each with its own
    BN batch statistics; not the first micro-batch's alone, nor their sum."""
    p = parts(lr=1.0, momentum=0.0, weight_decay=0.0, steps=1)
    data = batches(n=2, batch=2)
    reference = copy.deepcopy(p.model).train()
    grads = [_gradients(reference, x, y, p.preprocess) for x, y, _, _ in data]
    before = _parameters(p.model)
    train_one_epoch(p, data, Progress(), loop(steps_per_epoch=1, accum_steps=2, global_batch=4))
    for q, b, g_a, g_b in zip(p.model.parameters(), before, *grads):
        torch.testing.assert_close(b - q.detach(), (g_a + g_b) / 2, rtol=1e-4, atol=1e-6)
    assert any(not torch.allclose(g_a, (g_a + g_b) / 2) for g_a, g_b in zip(*grads))  # the second batch counts


def test_the_loop_averages_the_weights_of_each_step_into_the_ema():
    from fishnet_train.training.ema import WeightAverage

    p = parts(steps=2)
    ema = WeightAverage(p.model, decay=0.25, every_steps=1)
    p = StepParts(p.model, p.step_model, p.optimizer, p.scaler, p.schedule, p.preprocess, CPU, ema=ema)
    stepped = []
    train_one_epoch(p, batches(n=2), Progress(), loop(steps_per_epoch=2),
                    after_step=lambda q: stepped.append(_parameters(p.model)))
    first, second = stepped  # the first update copies the weights; the second averages
    for average, a, b in zip(ema.model.parameters(), first, second):
        torch.testing.assert_close(average, 0.25 * a + 0.75 * b)
    assert any(not torch.allclose(a, b) for a, b in zip(ema.model.parameters(), second))


def test_each_micro_batch_trains_on_the_batch_augmentation_drawn_from_its_seed():
    from fishnet_train.data.augment import BatchAugment, batch_seed

    augment = BatchAugment(0.5, 1.0, 0.0, num_classes=3)
    p = parts(lr=0.0)
    p = StepParts(p.model, p.step_model, p.optimizer, p.scaler, p.schedule, p.preprocess, CPU, augment=augment)
    data = batches(n=1)
    images, targets, _, _ = data[0]
    x, mixed = augment(p.preprocess(images), targets, batch_seed(7, 0, 0))
    assert mixed.shape == (4, 3)  # class probabilities: the batch was mixed
    expected = F.cross_entropy(copy.deepcopy(p.model).train()(x), mixed)
    stats = train_one_epoch(p, data, Progress(), loop(steps_per_epoch=1, seed=7))
    assert stats.loss == pytest.approx(expected.item(), rel=1e-5)
    plain = F.cross_entropy(copy.deepcopy(p.model).train()(p.preprocess(images)), targets)
    assert stats.loss != pytest.approx(plain.item(), rel=1e-3)
