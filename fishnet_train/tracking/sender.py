"""A remote tracker's calls made off the training thread, in order: a server that is slow, down or gone
costs the training loop nothing; what it cannot take yet is kept and sent again, and what is still unsent
when the run ends is dropped after a bounded wait, each with one warning. A tracker that refuses a call for
good (a bad address, a run that is gone, no permission) is given up for the run, with one warning."""
from __future__ import annotations

import queue
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

MAX_QUEUED = 100_000  # calls; at the default interval that is millions of steps of a server being down
RETRY_SECONDS = (1.0, 30.0)  # first and longest wait between tries of a failing call


class Backend(Protocol):
    """One tracker's client: ``start`` opens (or reopens) the tracked run and returns its id."""

    name: str
    stores_on_return: bool  # whether a call that returned has stored its points (not merely queued them)

    def start(self, params: dict[str, str]) -> str: ...

    def log(self, step: int, values: dict[str, float], timestamp: float) -> None: ...

    def finish(self, outcome: str, summary: dict[str, str], artifact: str | None) -> None: ...

    def refused_for_good(self, error: Exception) -> bool: ...


@dataclass
class Call:
    kind: str  # start | log | finish
    args: tuple = ()
    series: str = ""  # log: which series the step belongs to
    step: int = -1


@dataclass
class Marks:
    """What the tracker has taken: its run id and the last step of each series."""

    run_id: str | None = None
    logged: dict[str, int] = field(default_factory=dict)


class Sender:
    def __init__(self, backend: Backend, marks: Marks, on_change: Callable[[], None],
                 warn: Callable[[str], None]) -> None:
        self.backend, self.marks, self.on_change, self.warn = backend, marks, on_change, warn
        self.calls: queue.Queue[Call | None] = queue.Queue(MAX_QUEUED)
        self.lock = threading.Lock()  # guards marks and counts: the training thread reads them too
        self.wakeup = threading.Event()  # the end of the run: try a failing call once more at once
        self.deadline = float("inf")
        self.failing = self.given_up = self.unrecorded = False
        self.dropped = 0
        self.thread = threading.Thread(target=self._run, name=f"fishnet-{backend.name}", daemon=True)
        self.thread.start()

    def start(self, params: dict[str, str]) -> None:
        self._put(Call("start", (params,)))

    def log(self, series: str, step: int, values: dict[str, float]) -> None:
        """Points of a step the tracker has stored (a resumed run trains the steps after its checkpoint
        again) are not sent twice; a tracker that may lose what it has taken gets them again."""
        with self.lock:
            if self.backend.stores_on_return and step <= self.marks.logged.get(series, -1):
                return
        self._put(Call("log", (step, values, time.time()), series, step))

    def finish(self, outcome: str, summary: dict[str, str], artifact: str | None) -> None:
        self._put(Call("finish", (outcome, summary, artifact)))

    def close(self, seconds: float) -> None:
        """Wait up to ``seconds`` for the calls left, then give up on them (the thread is a daemon)."""
        self.deadline = time.monotonic() + seconds
        self.wakeup.set()
        try:
            self.calls.put(None, timeout=seconds)
            ending = 1  # the end marker, queued behind the calls
        except queue.Full:
            ending = 0
        self.thread.join(max(0.0, self.deadline - time.monotonic()) + 0.1)
        # A thread still running holds one call, and the end marker waits in the queue behind the others.
        left = self.calls.qsize() - ending + 1 if self.thread.is_alive() else 0
        with self.lock:
            lost = self.dropped + left
        if lost and not self.given_up:
            self.warn(f"{self.backend.name}: {lost} call(s) not taken by the end of the run; they are lost "
                      "(training itself is complete)")

    def copy_marks(self) -> Marks:
        with self.lock:
            return Marks(self.marks.run_id, dict(self.marks.logged))

    def _put(self, call: Call) -> None:
        try:
            self.calls.put_nowait(call)
        except queue.Full:
            with self.lock:
                self.dropped += 1
                first = self.dropped == 1
            if first:
                self.warn(f"{self.backend.name}: {MAX_QUEUED} calls wait for the tracker; later points are dropped")

    def _run(self) -> None:
        while True:
            call = self.calls.get()
            if call is None:
                return
            if not self.given_up:
                self._deliver(call)

    def _deliver(self, call: Call) -> None:
        wait = RETRY_SECONDS[0]
        while True:
            try:
                result = getattr(self.backend, call.kind)(*call.args)
                break
            except Exception as e:  # any failure of the tracker's client: training must go on
                if self.backend.refused_for_good(e):
                    self.given_up = True
                    self.warn(f"{self.backend.name}: {one_line(e)}; nothing more is sent to it in this run "
                              "(training goes on)")
                    return
                if not self.failing:
                    self.failing = True
                    self.warn(f"{self.backend.name}: {one_line(e)}; its points are kept and sent again when it "
                              "answers (training goes on)")
                if time.monotonic() >= self.deadline:
                    with self.lock:
                        self.dropped += 1
                    return
                self.wakeup.wait(min(wait, max(0.0, self.deadline - time.monotonic())))
                self.wakeup.clear()
                wait = min(2 * wait, RETRY_SECONDS[1])
        if self.failing:
            self.failing = False
            self.warn(f"{self.backend.name}: reachable again; the points kept meanwhile are sent")
        self._advance(call, result)

    def _advance(self, call: Call, result: Any) -> None:
        with self.lock:
            if call.kind == "start":
                self.marks.run_id = result
            elif call.kind == "log":
                self.marks.logged[call.series] = max(call.step, self.marks.logged.get(call.series, -1))
            else:
                return
        try:
            self.on_change()
        except OSError as e:  # tracking.json not written (a full disk): the tracker itself goes on
            if not self.unrecorded:
                self.unrecorded = True
                self.warn(f"{self.backend.name}: could not record its progress in the run directory: {e}")


def one_line(error: BaseException) -> str:
    """The error's first line, with any password or user in a URL it quotes masked (a tracker's address
    from the environment may carry them)."""
    text = str(error).strip().splitlines()
    head = f"{type(error).__name__}: {text[0][:300]}" if text else type(error).__name__
    return re.sub(r"(\w+://)[^/@\s]+@", r"\1***@", head)
