"""The loaders' worker processes."""
import signal

import torch
from torch.utils.data import Dataset

from fishnet_train.data.loaders import build_loader
from fishnet_train.processes.signals import STOP_SIGNALS


class _SignalDispositions(Dataset):
    """Each item: what the worker process that loads it does with each stop signal."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([signal.getsignal(sig) == signal.SIG_IGN for sig in STOP_SIGNALS])


def test_loader_workers_ignore_the_stop_signals_the_training_process_acts_on():
    loader = build_loader(_SignalDispositions(), range(2), batch_size=1, workers=2, pin_memory=False)
    loader.collate_fn = torch.stack
    assert all(bool(batch.all()) for batch in loader)
    assert signal.getsignal(signal.SIGTERM) != signal.SIG_IGN  # this process keeps its own handling
