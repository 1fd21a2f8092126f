import pytest
import torch

from fishnet_train.data import DevicePrefetcher


def _batches(n):
    return [(torch.full((2, 4, 4, 3), i, dtype=torch.uint8), torch.tensor([i, i]), torch.zeros(2, 3), [f"bad{i}"])
            for i in range(n)]


def test_prefetcher_yields_every_batch_in_order_on_the_cpu():
    batches = _batches(3)
    got = list(DevicePrefetcher(batches, torch.device("cpu")))
    assert len(got) == 3
    for (images, targets, alphas, skipped), expected in zip(got, batches):
        assert torch.equal(images, expected[0]) and torch.equal(targets, expected[1])
        assert skipped == expected[3]


def test_prefetcher_of_an_empty_loader_stops_at_once():
    assert list(DevicePrefetcher([], torch.device("cpu"))) == []


@pytest.mark.gpu
def test_prefetcher_copies_to_the_gpu_ahead_and_keeps_contents():
    batches = [tuple(t.pin_memory() if isinstance(t, torch.Tensor) else t for t in b) for b in _batches(4)]
    got = list(DevicePrefetcher(batches, torch.device("cuda")))
    assert len(got) == 4
    for (images, targets, _, _), expected in zip(got, batches):
        assert images.is_cuda and torch.equal(images.cpu(), expected[0])
        assert torch.equal(targets.cpu(), expected[1])
