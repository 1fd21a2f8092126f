"""One optimiser step's details: the loss over micro-batches, each micro-batch's augmentation seed, fp16
with clipping, and a stop signal at a step that was skipped."""
import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from fishnet_train.data.augment import batch_seed
from fishnet_train.processes.signals import Preempted, StopRequest
from fishnet_train.training.checkpoint import Progress
from fishnet_train.training.loop import train_one_epoch

from .test_loop import _fp16_scaler_parts, _poisoned, batches, loop, parts


def test_an_accumulated_steps_loss_is_the_mean_over_its_micro_batches():
    p = parts(lr=0.0)  # the weights stay; train-mode BN uses each micro-batch's own statistics
    data = batches(n=6)
    model = copy.deepcopy(p.model).train()
    expected = [F.cross_entropy(model(p.preprocess(x)), y).item() for x, y, _, _ in data]
    stats = train_one_epoch(p, data, Progress(), loop(accum_steps=2, global_batch=8))
    assert stats.loss == pytest.approx(sum(expected) / 6, rel=1e-5)


def test_each_micro_batch_is_augmented_with_the_seed_of_its_place_in_the_global_batch():
    seeds = []

    def recording_augment(x, y, seed):
        seeds.append(seed)
        return x, y

    p = dataclasses.replace(parts(), augment=recording_augment)
    train_one_epoch(p, batches(n=4), Progress(step=5), loop(steps_per_epoch=2, accum_steps=2, rank=1, seed=7))
    # Rank 1 of a run accumulating 2: micro-batches 2 and 3 of each global batch.
    assert seeds == [batch_seed(7, step, part) for step in (5, 6) for part in (2, 3)]


def test_an_fp16_step_clips_the_unscaled_gradients():
    deltas = []
    for make in (lambda: parts(lr=1.0, momentum=0.0, weight_decay=0.0), lambda: _fp16_scaler_parts(False)):
        p = make()
        for group in p.optimizer.param_groups:
            group.update(lr=1.0, momentum=0.0, weight_decay=0.0)
        p = dataclasses.replace(p, schedule=parts(lr=1.0).schedule)
        before = [q.detach().clone() for q in p.model.parameters()]
        train_one_epoch(p, batches(n=1), Progress(), loop(steps_per_epoch=1, clip_grad_norm=1e-3))
        deltas.append(torch.cat([(q.detach() - b).flatten() for q, b in zip(p.model.parameters(), before)]))
    # Clipped after unscaling, the loss scale of 2**16 leaves the update as it is without one.
    assert deltas[1].norm() == pytest.approx(1e-3, rel=1e-3)
    assert torch.allclose(deltas[0], deltas[1], atol=1e-7)


def test_a_stop_signal_at_a_step_dropped_for_its_loss_still_stops_after_it():
    stop = StopRequest()
    stop.signum = 15
    saved = []
    with pytest.raises(Preempted, match="epoch 1, step 1"):
        train_one_epoch(_poisoned(parts()), batches(), Progress(), loop(nan_policy="skip"), stop=stop,
                        save=lambda: saved.append(1))
    assert saved == [1]
