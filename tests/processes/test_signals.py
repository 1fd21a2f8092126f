"""The stop request: stop signals recorded for the next step, Ctrl-C raised where it lands and again if dropped."""
import os
import signal

import pytest

from fishnet_train.processes.signals import StopRequest

from ..helpers import drop_a_ctrl_c


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_dropped_in_a_finalizer_is_raised_at_the_next_check():
    stop = StopRequest().install()
    try:
        drop_a_ctrl_c()
        assert stop.interrupted and not stop.requested
        with pytest.raises(KeyboardInterrupt):
            stop.raise_if_interrupted()
        with pytest.raises(KeyboardInterrupt):
            stop.stopping()
    finally:
        stop.uninstall()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_still_interrupts_where_it_lands():
    stop = StopRequest().install()
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(3))  # the handler runs at the next bytecode
    finally:
        stop.uninstall()


def test_a_stop_signal_is_recorded_not_raised():
    stop = StopRequest().install()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop.stopping() and stop.signum == signal.SIGUSR1 and not stop.interrupted
    finally:
        stop.uninstall()


def test_a_process_that_ignores_ctrl_c_keeps_ignoring_it():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell leaves it for a job started with &
    try:
        stop = StopRequest().install()
        os.kill(os.getpid(), signal.SIGINT)
        stop.uninstall()
        assert not stop.interrupted and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
