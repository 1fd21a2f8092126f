"""Evaluation: every image counted once over the processes, and a stop signal on one ending the pass on all."""
import datetime
import os
import random

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from fishnet_train.training.evaluate import EvaluationStopped, evaluate


def _batches(rank: int) -> list:
    """Rank 0's shard: 3 batches, rank 1's: 2 (contiguous shards differ in length)."""
    torch.manual_seed(rank)
    return [(torch.randn(2, 4), torch.tensor([0, 1]), torch.zeros(2, 3), []) for _ in range(3 - rank)]


def _evaluate_on_two_ranks(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)  # forked: the parent's OpenMP threads are not in this process
    # A rank left waiting in a collective fails the test within a minute instead of hanging it.
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=60))
    try:
        torch.manual_seed(0)
        model, outcomes = nn.Linear(4, 2), []
        for stopping_rank in (None, 1, 0):
            asked: list[int] = []

            def stopping() -> bool:  # a signal on one rank only, arriving after its first batch
                asked.append(1)
                return rank == stopping_rank and len(asked) == 2

            try:
                result = evaluate(model, _batches(rank), lambda x: x, 2, torch.device("cpu"), stopping=stopping)
                outcomes.append(result.images)
            except EvaluationStopped:
                outcomes.append("stopped")
        torch.save(outcomes, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_a_stop_on_one_rank_ends_the_pass_on_every_rank_without_a_collective_left_waiting(tmp_path):
    port = 29000 + random.Random(os.getpid() + 1).randint(0, 900)
    out = str(tmp_path / "outcomes")
    mp.start_processes(_evaluate_on_two_ranks, args=(port, out), nprocs=2, start_method="fork")
    # Unstopped, then stopped by rank 1 (the shorter shard) and by rank 0: every rank raises, and the next pass
    # on the same process group still meets in its collectives.
    assert torch.load(f"{out}.0") == torch.load(f"{out}.1") == [10, "stopped", "stopped"]
