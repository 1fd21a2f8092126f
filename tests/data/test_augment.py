"""The modern augmentations are torchvision's ops, drawn from each sample's or micro-batch's seed."""
import random

import pytest
import torch
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode, v2

from fishnet_train.data.augment import BatchAugment, auto_augment, batch_seed
from fishnet_train.data.transforms import TrainTransform, progressive_crop


@pytest.mark.parametrize("name, op", [("ra", v2.RandAugment), ("ta_wide", v2.TrivialAugmentWide),
                                      ("aa", v2.AutoAugment)])
def test_each_policy_is_torchvisions_with_bilinear_interpolation(name, op):
    policy = auto_augment(name, magnitude=7)
    assert type(policy) is op and policy.interpolation == InterpolationMode.BILINEAR
    if name == "ra":
        assert policy.magnitude == 7 and policy.num_ops == 2
    assert auto_augment(None) is None


def test_a_samples_policy_is_drawn_from_its_own_generator_after_its_crop():
    image = torch.randint(0, 256, (3, 60, 50), dtype=torch.uint8)
    policy = auto_augment("ta_wide")
    plain = TrainTransform(40, (0.3, 1.0), (0.75, 1.33), True, 0.1)
    augmented = TrainTransform(40, (0.3, 1.0), (0.75, 1.33), True, 0.1, augment=policy)
    outputs = set()
    for seed in range(6):
        global_state = torch.get_rng_state()
        out, alpha = augmented(image, random.Random(seed))
        assert torch.equal(torch.get_rng_state(), global_state)  # the training randomness is untouched
        rng = random.Random(seed)
        crop, plain_alpha = plain(image, rng)  # the same crop, flip and lighting draws as without a policy
        torch.manual_seed(rng.getrandbits(63))
        expected = policy(crop.permute(2, 0, 1)).permute(1, 2, 0)
        assert torch.equal(alpha, plain_alpha) and torch.equal(out, expected)
        assert torch.equal(out, augmented(image, random.Random(seed))[0])
        outputs.add(out.numpy().tobytes())
    assert len(outputs) == 6


def test_random_erasing_is_torchvisions_image_by_image_from_the_batch_seed():
    x, y = torch.randn(6, 3, 32, 40), torch.arange(6)
    global_state = torch.get_rng_state()
    erased, targets = BatchAugment(0.5, 0.0, 0.0, num_classes=6)(x, y, seed=11)
    assert torch.equal(torch.get_rng_state(), global_state) and torch.equal(targets, y)
    torch.manual_seed(11)
    reference = torch.stack([T.RandomErasing(p=0.5, value=0)(image) for image in x])
    assert torch.equal(erased, reference)
    assert 0 < sum(not torch.equal(a, b) for a, b in zip(erased, x)) < 6  # some images erased, not all


def test_mixup_or_cutmix_is_torchvisions_random_choice_from_the_batch_seed():
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 5, (8,))
    augment = BatchAugment(0.0, 0.2, 1.0, num_classes=5)
    mixed, probs = augment(x, y, seed=3)
    torch.manual_seed(3)
    ref_x, ref_probs = v2.RandomChoice([v2.MixUp(alpha=0.2, num_classes=5), v2.CutMix(alpha=1.0, num_classes=5)])(x, y)
    assert torch.equal(mixed, ref_x) and torch.equal(probs, ref_probs)
    assert probs.shape == (8, 5) and torch.allclose(probs.sum(1), torch.ones(8))
    assert not torch.equal(mixed, x)
    seeds = {batch_seed(0, step, part) for step in range(3) for part in range(3)}
    assert len(seeds) == 9  # each micro-batch of each step draws on its own


def test_batch_augment_is_off_unless_an_option_asks_for_it():
    assert not BatchAugment(0.0, 0.0, 0.0, 10).active
    assert BatchAugment(0.1, 0.0, 0.0, 10).active and BatchAugment(0.0, 0.0, 0.5, 10).active


def test_progressive_crop_follows_ffcvs_ramp_in_multiples_of_32_px():
    # FFCV's rn50 configs: min_res 160, max_res 192, start_ramp 65, end_ramp 76 (88 epochs).
    sizes = [progressive_crop(epoch, 160, 192, (65, 76)) for epoch in (0, 65, 70, 71, 75, 76, 87)]
    assert sizes == [160, 160, 160, 192, 192, 192, 192]  # np.round(np.interp(epoch, ...) / 32) * 32
    assert [progressive_crop(e, 128, 224, (2, 6)) for e in range(8)] == [128, 128, 128, 160, 192, 192, 224, 224]
    assert progressive_crop(0, 112, 176, (0, 4)) == 112 and progressive_crop(4, 112, 176, (0, 4)) == 176  # ends kept
    assert progressive_crop(5, None, 224, (0, 0)) is None


def test_progressive_crop_is_the_train_crop_itself_from_the_ramps_last_epoch_on():
    # A train_crop off the 32 px grid: the last epoch of the ramp does not round it down to 192.
    assert [progressive_crop(e, 160, 200, (2, 6)) for e in (5, 6, 7)] == [192, 200, 200]
