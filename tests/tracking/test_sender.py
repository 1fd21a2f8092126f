"""A remote tracker's calls leave the training thread: a tracker that is down, slow or gone never stops
training; what it cannot take is kept and sent again, in order, or dropped at the end with one warning."""
import threading
import time

import pytest

from fishnet_train.tracking import sender as sender_module
from fishnet_train.tracking.sender import Marks, Sender


class Tracker:
    """A tracker's client that is down for its first ``failures`` calls, and takes ``seconds`` per call."""

    name = "tracker"
    stores_on_return = True

    def __init__(self, failures=0, seconds=0.0):
        self.failures, self.seconds = failures, seconds
        self.taken, self.lock = [], threading.Lock()

    def _call(self, *what):
        time.sleep(self.seconds)
        with self.lock:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("Connection refused\nsecond line")
            self.taken.append(what)

    def start(self, params):
        self._call("start", dict(params))
        return "run-1"

    def log(self, step, values, timestamp):
        self._call("log", step, dict(values))

    def finish(self, outcome, summary, artifact):
        self._call("finish", outcome, dict(summary), artifact)

    def refused_for_good(self, error):
        return isinstance(error, PermissionError)


@pytest.fixture
def quick_retries(monkeypatch):
    monkeypatch.setattr(sender_module, "RETRY_SECONDS", (0.01, 0.02))


def sender_for(tracker, marks=None):
    warnings, changes = [], []
    sender = Sender(tracker, marks or Marks(), lambda: changes.append(1), warnings.append)
    return sender, warnings, changes


@pytest.mark.usefixtures("quick_retries")
def test_a_tracker_that_is_down_gets_every_call_in_order_once_it_answers_with_one_warning():
    tracker = Tracker(failures=5)
    sender, warnings, changes = sender_for(tracker)
    sender.start({"a": "1"})
    for step in (1, 2, 3):
        sender.log("step", step, {"loss": float(step)})
    sender.finish("finished", {"checkpoint.last": "/x/last.pt"}, None)
    sender.close(seconds=10)
    assert tracker.taken == [("start", {"a": "1"}), ("log", 1, {"loss": 1.0}), ("log", 2, {"loss": 2.0}),
                             ("log", 3, {"loss": 3.0}), ("finish", "finished", {"checkpoint.last": "/x/last.pt"}, None)]
    assert warnings == ["tracker: ConnectionError: Connection refused; its points are kept and sent again when it "
                        "answers (training goes on)", "tracker: reachable again; the points kept meanwhile are sent"]
    assert sender.copy_marks() == Marks("run-1", {"step": 3}) and len(changes) == 4  # the start and each point


def test_a_slow_tracker_costs_the_training_thread_nothing():
    tracker = Tracker(seconds=0.5)
    sender, _, _ = sender_for(tracker)
    began = time.perf_counter()
    sender.start({})
    for step in range(20):
        sender.log("step", step, {"loss": 1.0})
    assert time.perf_counter() - began < 0.2  # ten seconds of the tracker's time are queued, not waited for
    sender.close(seconds=0.1)


@pytest.mark.usefixtures("quick_retries")
def test_what_a_tracker_that_never_answers_has_not_taken_is_dropped_at_the_end_with_one_warning():
    tracker = Tracker(failures=10**9)
    sender, warnings, _ = sender_for(tracker)
    sender.start({})
    for step in range(5):
        sender.log("step", step, {"loss": 1.0})
    began = time.perf_counter()
    sender.close(seconds=0.5)
    assert time.perf_counter() - began < 3
    assert tracker.taken == []
    assert len(warnings) == 2 and warnings[1].startswith("tracker: ")
    assert "not taken by the end of the run" in warnings[1]


def test_steps_the_tracker_already_has_are_not_sent_again_per_series():
    tracker = Tracker()
    sender, _, _ = sender_for(tracker, Marks("run-1", {"step": 20, "epoch": 10}))
    for series, step in (("step", 20), ("step", 21), ("epoch", 10), ("epoch", 20), ("eval", 5)):
        sender.log(series, step, {"x": 1.0})
    sender.close(seconds=5)
    assert [(kind, step) for kind, step, _ in tracker.taken] == [("log", 21), ("log", 20), ("log", 5)]
    assert sender.copy_marks().logged == {"step": 21, "epoch": 20, "eval": 5}


def test_a_tracker_that_may_lose_what_it_took_gets_the_repeated_steps_again():
    tracker = Tracker()
    tracker.stores_on_return = False
    sender, _, _ = sender_for(tracker, Marks("run-1", {"step": 20}))
    for step in (19, 20, 21):
        sender.log("step", step, {"x": 1.0})
    sender.close(seconds=5)
    assert [step for _, step, _ in tracker.taken] == [19, 20, 21]


def test_a_full_queue_drops_later_points_with_one_warning(monkeypatch):
    monkeypatch.setattr(sender_module, "MAX_QUEUED", 3)
    release = threading.Event()
    tracker = Tracker()
    tracker.start = lambda params: release.wait() or "run-1"  # a start that hangs until released
    sender, warnings, _ = sender_for(tracker)
    sender.start({})
    time.sleep(0.1)  # the thread is inside the start call
    for step in range(4):
        sender.log("step", step, {"x": 1.0})
    assert warnings == ["tracker: 3 calls wait for the tracker; later points are dropped"]  # at the first drop
    for step in range(4, 6):
        sender.log("step", step, {"x": 1.0})
    assert len(warnings) == 1
    release.set()
    sender.close(seconds=5)
    assert [step for _, step, _ in tracker.taken] == [0, 1, 2]


class CountingUnreachable(Tracker):
    """Down for good, counting the tries; its error quotes an address with credentials, as MLflow's do."""

    def __init__(self, error):
        super().__init__()
        self.error, self.tries = error, 0

    def _call(self, *what):
        self.tries += 1
        raise self.error


def test_a_tracker_that_refuses_for_good_is_given_up_with_one_warning_and_training_goes_on():
    tracker = CountingUnreachable(PermissionError("403 Forbidden for https://ana:s3cret@mlflow.example.org/api"))
    sender, warnings, _ = sender_for(tracker)
    sender.start({})
    for step in range(5):
        sender.log("step", step, {"loss": 1.0})
    sender.close(seconds=5)
    assert tracker.tries == 1  # nothing more is tried
    assert warnings == ["tracker: PermissionError: 403 Forbidden for https://***@mlflow.example.org/api; nothing "
                        "more is sent to it in this run (training goes on)"]


def test_the_end_of_a_run_retries_an_unreachable_tracker_at_the_same_pace_not_in_a_busy_loop(monkeypatch):
    monkeypatch.setattr(sender_module, "RETRY_SECONDS", (0.1, 0.1))
    tracker = CountingUnreachable(ConnectionError("refused by http://u:pw@127.0.0.1:9/api"))
    sender, warnings, _ = sender_for(tracker)
    sender.start({})
    time.sleep(0.3)
    before = tracker.tries
    sender.close(seconds=1.0)
    assert 5 <= tracker.tries - before <= 13  # about one try per 0.1 s of the second's wait
    assert "pw" not in warnings[0] and "http://***@127.0.0.1:9/api" in warnings[0]


def test_a_record_that_cannot_be_written_is_said_once_and_sending_goes_on():
    tracker = Tracker()
    warnings = []

    def full_disk():
        raise OSError(28, "No space left on device")

    sender = Sender(tracker, Marks(), full_disk, warnings.append)
    sender.start({})
    for step in range(3):
        sender.log("step", step, {"loss": 1.0})
    sender.close(seconds=5)
    assert len(tracker.taken) == 4
    assert warnings == ["tracker: could not record its progress in the run directory: [Errno 28] No space left "
                        "on device"]


def test_a_failing_call_is_tried_again_soon_then_less_and_less_often(monkeypatch):
    monkeypatch.setattr(sender_module, "RETRY_SECONDS", (0.01, 5.0))
    tracker = Tracker(failures=3)  # tried again after 0.01, 0.02 and 0.04 s
    sender, _, _ = sender_for(tracker)
    began = time.monotonic()
    sender.start({})
    while not tracker.taken:
        assert time.monotonic() - began < 2, "the retries wait too long"
        time.sleep(0.005)
    sender.close(seconds=1)


def test_a_late_point_of_an_earlier_step_does_not_move_the_mark_back():
    tracker = Tracker()
    sender, _, _ = sender_for(tracker, Marks("run-1"))
    sender.log("epoch", 8, {"x": 1.0})
    sender.log("step", 9, {"x": 1.0})
    tracker.stores_on_return = False  # so that the earlier step is sent
    sender.log("epoch", 4, {"x": 1.0})
    sender.close(seconds=5)
    assert sender.copy_marks().logged == {"epoch": 8, "step": 9}


def test_the_calls_a_hanging_tracker_still_holds_at_the_end_are_counted_as_lost():
    tracker = Tracker(seconds=3.0)  # every call hangs for three seconds
    sender, warnings, _ = sender_for(tracker)
    sender.start({})
    for step in range(4):
        sender.log("step", step, {"x": 1.0})
    sender.close(seconds=0.2)
    assert warnings == ["tracker: 5 call(s) not taken by the end of the run; they are lost (training itself is "
                        "complete)"]  # the start in progress and the four points behind it
