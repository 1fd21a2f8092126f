"""The end of a run waits a bounded time, in all, for trackers that do not answer: less after a stop signal,
whose cluster kills the job soon after."""
import time

import pytest

from fishnet_train.tracking import sender as sender_module
from fishnet_train.tracking import trackers as trackers_module
from fishnet_train.tracking.sender import Marks, Sender
from fishnet_train.tracking.trackers import Trackers


class Unreachable:
    stores_on_return = True

    def __init__(self, name):
        self.name = name

    def start(self, params):
        raise ConnectionError("Connection refused")

    log = finish = start

    def refused_for_good(self, error):
        return False


@pytest.fixture
def short_waits(monkeypatch):
    monkeypatch.setattr(trackers_module, "CLOSE_SECONDS", 1.0)
    monkeypatch.setattr(trackers_module, "STOPPED_CLOSE_SECONDS", 0.3)
    monkeypatch.setattr(sender_module, "RETRY_SECONDS", (0.05, 0.05))


def two_unreachable_trackers(tmp_path, warnings):
    trackers = Trackers(str(tmp_path), None)
    for name in ("mlflow", "wandb"):
        trackers.senders[name] = Sender(Unreachable(name), Marks(), trackers._save, warnings.append)
    trackers.start({})
    trackers.log("step", 1, {"train/loss": 1.0})
    return trackers


@pytest.mark.usefixtures("short_waits")
@pytest.mark.parametrize("outcome, low, high", [("finished", 0.9, 1.6), ("stopped", 0.2, 0.8)])
def test_the_end_waits_for_unreachable_trackers_once_for_all_of_them(tmp_path, outcome, low, high):
    warnings = []
    trackers = two_unreachable_trackers(tmp_path, warnings)
    began = time.monotonic()
    trackers.finish(outcome, {}, None)
    assert low < time.monotonic() - began < high  # one wait for both, not one each
    assert sum("not taken by the end of the run" in w for w in warnings) == 2  # each tracker says what it lost
    assert trackers.record() == {}  # neither tracked run ever started
