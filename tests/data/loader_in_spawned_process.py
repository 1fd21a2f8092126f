"""A loader whose workers ignore the stop signals, left running in a process that multiprocessing
spawned, as a rank under the local launcher leaves its epoch's loader when a stop signal ends the run.
Prints the rank's exit code, or "hung" if it has not ended 60 s after it returned.

    python -m tests.data.loader_in_spawned_process
"""
import multiprocessing

import torch
from torch.utils.data import TensorDataset

from fishnet_train.data.workers import ForkingLoader

LEFT_RUNNING = []  # as a stopped run's iterator stays referenced until the process exits


def rank() -> None:
    loader = ForkingLoader(TensorDataset(torch.zeros(8, 1)), batch_size=1, num_workers=2, ignore_stop_signals=True)
    iterator = iter(loader)
    next(iterator)
    LEFT_RUNNING.append(iterator)


if __name__ == "__main__":
    process = multiprocessing.get_context("spawn").Process(target=rank)
    process.start()
    process.join(60)
    print("hung" if process.exitcode is None else process.exitcode)
    if process.exitcode is None:
        for child in [process]:
            child.kill()
