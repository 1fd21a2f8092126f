"""The trainer's loader after ``multiprocessing.set_start_method(METHOD, force=True)``, as Python 3.14 makes
forkserver Linux's default: prints, as JSON, its start method and what its workers inherited.

    python -m tests.data.default_start_method forkserver|spawn
"""
import gc
import json
import multiprocessing
import sys

import torch
from torch.utils.data import Dataset, SequentialSampler

from fishnet_train.data.loaders import build_loader


class WorkerView(Dataset):
    """Item i: a blank item whose list of skipped files holds the worker's count of frozen objects."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> tuple:
        return torch.zeros(1), 0, torch.zeros(3), [str(gc.get_freeze_count())]


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1], force=True)
    loader = build_loader(WorkerView(), SequentialSampler(range(4)), 1, 2, pin_memory=False)
    frozen = [int(count) for *_, counts in loader for count in counts]
    context = loader.multiprocessing_context
    print(json.dumps({"start_method": context.get_start_method() if context else multiprocessing.get_start_method(),
                      "frozen_in_workers": frozen}))
