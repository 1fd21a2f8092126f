"""TensorBoard after a restart: the points a killed process wrote after its checkpoint are dropped, so each
step shows once, with the resumed run's value."""
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fishnet_train.config import TrackingConfig
from fishnet_train.tracking import open_trackers


def scalars(run_dir, tag):
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0}, purge_orphaned_data=True)
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def open_tensorboard(run_dir, resumed_step):
    return open_trackers(TrackingConfig(), str(run_dir), "run", resumed_step, {}, print)


def test_a_resumed_run_replaces_the_points_after_its_checkpoint(tmp_path):
    first = open_tensorboard(tmp_path, 0)
    first.start({"model.name": "fishnet99"})
    for step in range(1, 7):
        first.log("step", step, {"train/loss": float(step)})
    first.tensorboard.writer.flush()  # what a process killed at step 6 leaves; its checkpoint is step 3's
    resumed = open_tensorboard(tmp_path, 3)
    resumed.start({"model.name": "fishnet99"})
    for step in range(4, 8):
        resumed.log("step", step, {"train/loss": 10.0 * step})
    resumed.finish("finished", {}, None)
    assert scalars(tmp_path, "train/loss") == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0), (5, 50.0), (6, 60.0),
                                               (7, 70.0)]


def test_without_tensorboard_in_the_loggers_no_event_file_is_written(tmp_path):
    trackers = open_trackers(TrackingConfig(loggers=()), str(tmp_path), "run", 0, {}, print)
    trackers.start({})
    trackers.log("step", 1, {"train/loss": 1.0})
    trackers.finish("finished", {}, None)
    assert not (tmp_path / "tb").exists()
