import pytest

from fishnet_train.data.samplers import EvalSampler, TrainSampler, sample_seed


def global_batches(num_samples, global_batch, world, epoch=0, start=0, seed=0):
    """The global batches as the union, in rank order, of what each rank draws."""
    per_rank = []
    for rank in range(world):
        sampler = TrainSampler(num_samples, global_batch, rank, world, seed)
        sampler.set_epoch(epoch, start)
        per_rank.append(list(sampler))
    chunk = global_batch // world
    steps = len(per_rank[0]) // chunk
    return [sum((r[s * chunk:(s + 1) * chunk] for r in per_rank), []) for s in range(steps)]


def test_global_batches_do_not_depend_on_the_number_of_processes():
    assert global_batches(100, 8, 1) == global_batches(100, 8, 2) == global_batches(100, 8, 4)


def test_epoch_is_a_permutation_with_the_incomplete_batch_dropped():
    batches = global_batches(30, 8, 2)
    indices = [i for batch in batches for i, *_ in batch]
    assert len(batches) == 3 and len(set(indices)) == 24 and all(0 <= i < 30 for i in indices)


def test_epochs_differ_and_are_reproducible():
    assert global_batches(50, 10, 1, epoch=0) == global_batches(50, 10, 1, epoch=0)
    assert global_batches(50, 10, 1, epoch=0) != global_batches(50, 10, 1, epoch=1)


def test_resuming_at_a_batch_continues_with_the_same_samples_and_seeds():
    full = global_batches(64, 8, 2, epoch=3)
    assert global_batches(64, 8, 2, epoch=3, start=5) == full[5:]
    assert global_batches(64, 8, 4, epoch=3, start=5) == full[5:]


def test_end_batch_caps_the_epoch():
    sampler = TrainSampler(64, 8)
    sampler.set_epoch(0, 1, 3)
    assert len(list(sampler)) == len(sampler) == 16


def test_eval_shards_cover_every_image_exactly_once():
    for world in (1, 2, 3, 4):
        shards = [list(EvalSampler(7, r, world)) for r in range(world)]
        assert sum(shards, []) == list(range(7))
        assert [len(EvalSampler(7, r, world)) for r in range(world)] == [len(s) for s in shards]


def test_repeated_augmentation_repeats_each_batchs_samples_over_the_processes():
    per_rank = []
    for rank in range(4):
        sampler = TrainSampler(64, 8, rank, 4, seed=1, repeats=4)
        sampler.set_epoch(2)
        per_rank.append(list(sampler))
    batches = [sum((r[s * 2:(s + 1) * 2] for r in per_rank), []) for s in range(8)]
    indices = [i for batch in batches for i, *_ in batch]
    assert len(indices) == 64 and len(set(indices)) == 16  # an epoch keeps its length: 16 samples, 4 times each
    for batch in batches:
        pair = [i for i, *_ in batch[:2]]
        assert [i for i, *_ in batch] == pair * 4 and pair[0] != pair[1]  # copy k of sample j at k * 2 + j
        assert len({seed for _, seed, _ in batch}) == 8  # every copy augmented on its own
    assert all(len({i for i, *_ in r[s * 2:(s + 1) * 2]}) == 2 for r in per_rank for s in range(8))  # no rank twice
    single = TrainSampler(64, 8, seed=1, repeats=4)
    single.set_epoch(2)
    assert sum(batches, []) == list(single)  # global batches do not depend on the number of processes


def test_the_epochs_crop_size_travels_with_every_sample():
    sampler = TrainSampler(16, 4)
    sampler.set_epoch(0, crop=96)
    assert {crop for *_, crop in sampler} == {96}


def test_repeated_augmentation_draws_the_samples_of_the_run_without_it_in_the_same_order():
    repeated, plain = TrainSampler(60, 12, seed=5, repeats=3), TrainSampler(60, 4, seed=5)
    repeated.set_epoch(1)
    plain.set_epoch(1)
    drawn = [i for i, *_ in repeated]
    assert [drawn[b * 12:b * 12 + 4] for b in range(5)] == [[i for i, *_ in plain][b * 4:b * 4 + 4] for b in range(5)]


def test_orders_and_augmentation_seeds_stay_those_of_earlier_versions():
    # A run resumed with a newer version draws the same samples with the same augmentations.
    sampler = TrainSampler(20, 4, seed=3)
    sampler.set_epoch(1)
    assert list(sampler)[:3] == [(10, 103964809898013142, None), (14, 2281307592366435819, None),
                                 (15, 4458650374834858496, None)]
    assert sample_seed(12345, 7, 999) == 8730706749427101729


def test_augmentation_seeds_are_distinct_integers_of_63_bits():
    seeds = [sample_seed(seed, epoch, position) for seed in range(3) for epoch in range(3) for position in range(400)]
    assert all(isinstance(s, int) and 0 <= s < 2**63 for s in seeds)
    assert len(set(seeds)) == len(seeds)


def test_a_sampler_left_at_its_defaults_is_one_process_at_epoch_0_from_the_first_batch():
    fresh, explicit = TrainSampler(20, 4), TrainSampler(20, 4, rank=0, world_size=1, seed=0)
    explicit.set_epoch(0)
    assert list(fresh) == list(explicit) and len(fresh) == 20
    assert all(crop is None for *_, crop in fresh)
    assert list(EvalSampler(5)) == [0, 1, 2, 3, 4]


def test_a_sampler_resumed_at_the_end_of_its_epoch_has_nothing_left():
    sampler = TrainSampler(20, 4)
    sampler.set_epoch(0, start_batch=5)
    assert len(sampler) == 0 and list(sampler) == []


@pytest.mark.parametrize("world, repeats", [(3, 1), (1, 3), (2, 3)])
def test_a_global_batch_that_does_not_split_is_refused(world, repeats):
    with pytest.raises(ValueError, match=f"global batch 8 does not split over {world} processes and {repeats} repeats"):
        TrainSampler(40, 8, world_size=world, repeats=repeats)
