import torch

from fishnet_train.training.metrics import topk_correct


def test_topk_counts_hits():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.05, 0.15], [0.2, 0.3, 0.5]])
    targets = torch.tensor([1, 2, 0])
    top1, top2 = topk_correct(logits, targets, ks=(1, 2)).tolist()
    assert top1 == 1 and top2 == 2


def test_top5_with_fewer_classes_counts_everything():
    logits = torch.randn(4, 3)
    assert topk_correct(logits, torch.tensor([0, 1, 2, 0])).tolist() == [
        float((logits.argmax(1) == torch.tensor([0, 1, 2, 0])).sum()), 4.0]
