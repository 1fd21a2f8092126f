"""A failing rank ends the job: its message through the group's store, read by the others' watchers."""
import multiprocessing
import os
import socket
import time

import pytest
import torch.distributed as dist

from fishnet_train.errors import UserError
from fishnet_train.processes import peers
from fishnet_train.processes.distributed import init_distributed
from fishnet_train.processes.peers import (
    PeerFailed, PeerWatch, end_together, fail_together, failed_peer, lost_peer, publish_failure,
)


@pytest.fixture
def store():
    server = dist.TCPStore("127.0.0.1", 0, 2, is_master=True, wait_for_workers=False)
    return dist.PrefixStore("job", server)


def test_the_first_failure_is_the_one_every_rank_reads(store, monkeypatch):
    monkeypatch.setattr(peers, "LINGER_SECONDS", 0.1)
    publish_failure(store, rank=1, world_size=2, code=2, message="data.bad_images=error: x.jpg is empty")
    publish_failure(store, rank=0, world_size=2, code=1, message="RuntimeError: connection closed")
    first = failed_peer(store, rank=0, world_size=2)
    assert isinstance(first, PeerFailed) and first.code == 2
    assert str(first) == "rank 1 failed: data.bad_images=error: x.jpg is empty"
    assert failed_peer(store, rank=1, world_size=2) is None  # its own failure is not another's


def _watch_then_sleep(port: int, leaving: bool = False, seconds: float = 60) -> None:
    client = dist.PrefixStore("job", dist.TCPStore("127.0.0.1", port, 2, is_master=False))
    watch = PeerWatch(client, rank=1, world_size=2)
    if leaving:
        watch.leave()
    time.sleep(seconds)  # as if blocked in a collective


def test_a_watcher_ends_its_process_with_the_failed_rank_code_within_seconds(capfd, monkeypatch):
    monkeypatch.setattr(peers, "POLL_SECONDS", 0.2)
    server = dist.TCPStore("127.0.0.1", 0, 2, is_master=True, wait_for_workers=False)
    child = multiprocessing.get_context("fork").Process(target=_watch_then_sleep, args=(server.port,))
    child.start()
    time.sleep(0.5)
    started = time.monotonic()
    # Rank 0, which hosts the store, fails: it waits until the other rank has read why.
    publish_failure(dist.PrefixStore("job", server), rank=0, world_size=2, code=2, message="bad shard")
    child.join(timeout=20)
    assert child.exitcode == 2
    assert time.monotonic() - started < 5  # read within a poll, not after the 10 s linger
    assert "stopping: rank 0 failed: bad shard" in capfd.readouterr().err


@pytest.mark.parametrize("leaving, code", [(False, 1), (True, 0)], ids=["running", "leaving"])
@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_a_vanished_rank_0_ends_a_running_rank_but_not_one_that_is_leaving(monkeypatch, leaving, code, capfd):
    monkeypatch.setattr(peers, "POLL_SECONDS", 0.2)
    server = dist.TCPStore("127.0.0.1", 0, 2, is_master=True, wait_for_workers=False)
    child = multiprocessing.get_context("fork").Process(target=_watch_then_sleep, args=(server.port, leaving, 3))
    child.start()
    time.sleep(0.5)
    del server  # rank 0's process, and the store with it, is gone
    child.join(timeout=20)
    assert child.exitcode == code
    assert ("lost rank 0" in capfd.readouterr().err) == (not leaving)


def test_a_broken_collective_is_told_from_other_errors():
    assert lost_peer(RuntimeError("[gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:46464"))
    assert not lost_peer(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert not lost_peer(ValueError("Connection closed by peer"))


def _srun_rank(rank: int, port: int, fail: bool) -> None:
    """One of two srun-like tasks: rank 0 hosts the store (no elastic agent)."""
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "TORCHELASTIC_RESTART_COUNT"):
        os.environ.pop(name, None)
    os.environ.update(SLURM_PROCID=str(rank), SLURM_STEP_NUM_TASKS="2", SLURM_LOCALID=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    peers.POLL_SECONDS = 0.2
    info = init_distributed("cpu")
    watch = PeerWatch(info.store, info.rank, info.world_size)
    if not fail:
        end_together(watch)
        dist.destroy_process_group()
        os._exit(0)
    if rank == 1:
        watch.stop()
        fail_together(info, UserError("data.bad_images=error: zz.png is not an image"))
        os._exit(2)
    time.sleep(60)  # rank 0, as if blocked in the next collective


@pytest.mark.parametrize("fail", [False, True], ids=["both_finish", "rank_1_fails"])
def test_srun_ranks_end_together_or_with_the_failed_rank_code(fail, capfd):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = multiprocessing.get_context("fork")
    ranks = [context.Process(target=_srun_rank, args=(rank, port, fail)) for rank in (0, 1)]
    started = time.monotonic()
    for p in ranks:
        p.start()
    for p in ranks:
        p.join(timeout=30)
    assert [p.exitcode for p in ranks] == ([2, 2] if fail else [0, 0])
    assert time.monotonic() - started < 20
    err = capfd.readouterr().err
    assert ("stopping: rank 1 failed: data.bad_images=error: zz.png is not an image" in err) == fail
    assert "lost rank 0" not in err
