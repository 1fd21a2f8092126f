"""What an epoch shows while it trains (the bar, the trackers' step points, its warnings) and the figures
it returns."""
import dataclasses
import time

import pytest

from fishnet_train.reporting import Reporter
from fishnet_train.training.checkpoint import Progress
from fishnet_train.training.loop import train_one_epoch
from fishnet_train.training.optim import LrSchedule

from .test_loop import _fp16_scaler_parts, _poisoned, batches, diverged_after_3, loop, parts  # noqa: F401


class RecordingBar:
    """A bar like tqdm's: ``set_postfix``, and no ``line_due`` (the plain-line bar of a log file has one)."""

    def __init__(self, iterable):
        self.iterable, self.postfixes = iterable, []

    def __iter__(self):
        return iter(self.iterable)

    def set_postfix(self, **fields):
        self.postfixes.append(fields)


class LineBar(RecordingBar):
    line_due = True  # its line is due at every step


class SlowBatches:
    """Batches that take ``wait`` seconds each to arrive, as from a loader that cannot keep up."""

    def __init__(self, wait, n=3):
        self.data, self.wait = batches(n=n), wait

    def __iter__(self):
        for batch in self.data:
            time.sleep(self.wait)
            yield batch


class RecordingReporter(Reporter):
    def __init__(self, bar=RecordingBar, active=True):
        super().__init__(None, active=False)
        self.active = active  # rank 0's, without a run directory
        self.make_bar, self.bars, self.curves, self.warnings = bar, [], [], []

    def bar(self, iterable, total, desc):
        bar = self.make_bar(iterable)
        self.bars.append((total, desc, bar))
        return bar

    def scalars(self, values, step, series="step"):
        self.curves.append((step, series, dict(values)))

    def warning(self, message):
        self.warnings.append(message)


def test_every_tenth_step_shows_its_figures_on_the_bar():
    p, reporter, progress = parts(steps=10), RecordingReporter(), Progress()
    options = loop(steps_per_epoch=10, epochs=2, global_batch=400, track_every_steps=5)
    train_one_epoch(p, SlowBatches(0.02, n=10), progress, options, reporter=reporter)
    (total, desc, bar), = reporter.bars
    assert (total, desc) == (10, "epoch 1/2")
    (shown,) = bar.postfixes
    curves = reporter.curves[-1][2]  # step 10's points, which the bar shows too
    assert shown["step"] == 10 and shown["loss"] == f"{curves['train/loss']:.3f}"
    assert shown["lr"] == f"{p.schedule(9):.4g}"
    # Shown at the epoch's last step: its rate and data wait are the epoch's.
    assert int(shown["img_s"]) == pytest.approx(10 * 400 / progress.epoch_seconds, rel=0.02)
    assert int(shown["data_wait"].rstrip("%")) == pytest.approx(
        100 * progress.epoch_data_wait / progress.epoch_seconds, abs=1.5)


def test_a_resumed_epoch_shows_the_rate_and_data_wait_of_all_of_it():
    reporter = RecordingReporter()
    progress = Progress(epoch_step=7, step=7, epoch_seconds=100.0, epoch_data_wait=50.0)
    train_one_epoch(parts(), batches(), progress, loop(steps_per_epoch=10, global_batch=400), reporter=reporter)
    (shown,) = reporter.bars[0][2].postfixes
    assert int(shown["img_s"]) == pytest.approx(10 * 400 / progress.epoch_seconds, rel=0.02)  # about 40, not 80
    assert shown["data_wait"] == "50%"


class SlowerBatches(SlowBatches):
    """Batches whose loader slows down after the third: no wait, then ``wait`` seconds each."""

    def __iter__(self):
        for i, batch in enumerate(self.data):
            time.sleep(self.wait if i >= 3 else 0)
            yield batch


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_the_trackers_get_loss_lr_and_rate_every_track_every_steps_steps():
    p, reporter, progress = parts(steps=7), RecordingReporter(), Progress()
    options = loop(steps_per_epoch=7, global_batch=400, track_every_steps=3)
    train_one_epoch(p, SlowerBatches(0.5, n=7), progress, options, reporter=reporter)
    assert [(step, series) for step, series, _ in reporter.curves] == [(3, "step"), (6, "step")]
    for step, _, values in reporter.curves:
        assert set(values) == {"train/loss", "train/lr", "train/images_per_sec"}
        assert values["train/lr"] == p.schedule(step - 1) and values["train/loss"] > 0
    # Step 6's rate is that of steps 4-6 alone, each with its 0.5 s wait: under 1,200 images in 1.5 s.
    first, second = (values["train/images_per_sec"] for *_, values in reporter.curves)
    assert second < 1200 / 1.5 < first


def test_the_trackers_points_follow_the_step_count_not_the_clock():
    reporter = RecordingReporter(LineBar)  # a line is due at every step: the bar shows each
    train_one_epoch(parts(steps=4), batches(n=4), Progress(step=10), loop(steps_per_epoch=4, track_every_steps=2),
                    reporter=reporter)
    assert [shown["step"] for shown in reporter.bars[0][2].postfixes] == [11, 12, 13, 14]
    assert [step for step, *_ in reporter.curves] == [12, 14]  # the run's step, not the epoch's


def test_only_rank_0_reads_the_loss_for_the_trackers():
    reporter = RecordingReporter(active=False)
    train_one_epoch(parts(), batches(), Progress(), loop(track_every_steps=1), reporter=reporter)
    assert reporter.curves == []


def test_a_skipped_step_has_no_loss_point():
    reporter = RecordingReporter()
    train_one_epoch(_poisoned(parts()), batches(), Progress(), loop(nan_policy="skip", track_every_steps=1),
                    reporter=reporter)
    assert [set(values) for *_, values in reporter.curves] == [{"train/lr", "train/images_per_sec"}] * 3


def test_a_resumed_epoch_counts_its_bar_from_where_it_stopped():
    reporter = RecordingReporter()
    train_one_epoch(parts(), batches(n=2), Progress(epoch=1, epoch_step=1, step=4), loop(epochs=3), reporter=reporter)
    assert [(total, desc) for total, desc, _ in reporter.bars] == [(2, "epoch 2/3")]


@pytest.mark.parametrize("step", [1, 3])
def test_an_epoch_resumed_after_its_last_step_reports_the_rate_of_that_step(step):
    p = dataclasses.replace(parts(), schedule=LrSchedule(0.1, 3, 2, warmup_epochs=2))  # another rate each step
    stats = train_one_epoch(p, batches(n=0), Progress(epoch_step=3, step=step), loop())
    assert stats.lr == p.schedule(step - 1) and stats.steps == 0


def test_skipped_steps_are_warned_of_with_their_step_and_epoch():
    reporter = RecordingReporter()
    train_one_epoch(_poisoned(parts()), batches(), Progress(epoch=2, step=6), loop(nan_policy="skip"),
                    reporter=reporter)
    assert reporter.warnings == [f"non-finite loss at step {s} (epoch 3): step skipped (trainer.nan_policy=skip)"
                                 for s in (7, 8, 9)]


@pytest.mark.usefixtures("diverged_after_3")  # 3 skipped steps in a row make a diverged run
def test_a_diverged_fp16_run_is_warned_of_at_the_step_it_diverged():
    reporter = RecordingReporter()
    train_one_epoch(_fp16_scaler_parts(poisoned=True), batches(n=5, batch=2), Progress(step=10),
                    loop(steps_per_epoch=5, global_batch=2, nan_policy="skip"), reporter=reporter)
    assert reporter.warnings == ["fp16: the gradient scaler skipped 3 steps in a row by step 14: the run has "
                                 "diverged (trainer.nan_policy=skip goes on)"]


def test_the_data_wait_and_the_rate_cover_every_step_of_the_epoch():
    progress = Progress()
    stats = train_one_epoch(parts(), SlowBatches(0.1), progress, loop())
    assert progress.epoch_data_wait >= 0.3  # three waits, not the last one's
    assert stats.data_wait == pytest.approx(progress.epoch_data_wait / progress.epoch_seconds)
    assert stats.images_per_sec == pytest.approx(3 * 4 / progress.epoch_seconds)
