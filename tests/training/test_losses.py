"""The training losses against their references: torch's cross-entropy and timm's BinaryCrossEntropy."""
import pytest
import torch
import torch.nn.functional as F
from timm.loss import BinaryCrossEntropy

from fishnet_train.config import LossConfig
from fishnet_train.training.losses import classification_loss

LOGITS = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
TARGETS = torch.tensor([0, 1, 2, 3, 4, 0])


def test_cross_entropy_takes_class_indices_or_mixed_probabilities():
    options = LossConfig(label_smoothing=0.1)
    assert torch.equal(classification_loss(LOGITS, TARGETS, options),
                       F.cross_entropy(LOGITS, TARGETS, label_smoothing=0.1))
    probs = torch.softmax(torch.randn(6, 5), 1)
    smoothed = probs * 0.9 + 0.1 / 5
    expected = -(smoothed * F.log_softmax(LOGITS, 1)).sum(1).mean()
    torch.testing.assert_close(classification_loss(LOGITS, probs, options), expected)


@pytest.mark.parametrize("smoothing, thresh", [(0.0, None), (0.1, None), (0.1, 0.2)])
def test_bce_is_timms_binary_cross_entropy(smoothing, thresh):
    options = LossConfig(name="bce", label_smoothing=smoothing, bce_target_thresh=thresh)
    reference = BinaryCrossEntropy(smoothing=smoothing, target_threshold=thresh)
    torch.testing.assert_close(classification_loss(LOGITS, TARGETS, options), reference(LOGITS, TARGETS))
    # Mixed targets: timm's Mixup smooths before mixing, this loss after; both are linear, so they agree.
    mixed = 0.7 * F.one_hot(TARGETS, 5).float() + 0.3 * F.one_hot(TARGETS.roll(1), 5).float()
    smoothed = mixed * (1 - smoothing) + smoothing / 5
    torch.testing.assert_close(classification_loss(LOGITS, mixed, options),
                               BinaryCrossEntropy(smoothing=0.0, target_threshold=thresh)(LOGITS, smoothed))


def test_bce_keeps_mixed_targets_in_float32_under_bf16_logits():
    options = LossConfig(name="bce", label_smoothing=0.1)
    mixed = 0.9001 * F.one_hot(TARGETS, 5).float() + 0.0999 * F.one_hot(TARGETS.roll(1), 5).float()
    low = LOGITS.bfloat16()
    expected = BinaryCrossEntropy(smoothing=0.0)(low.float(), mixed * 0.9 + 0.1 / 5)
    assert classification_loss(low, mixed, options).dtype == torch.float32
    torch.testing.assert_close(classification_loss(low, mixed, options), expected)
