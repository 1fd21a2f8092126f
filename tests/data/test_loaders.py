"""The training loader ``build_train_loader`` builds from the data options."""
import pytest

from fishnet_train.config import DataConfig
from fishnet_train.data.index import SampleIndex, Split
from fishnet_train.data.loaders import build_train_loader
from fishnet_train.data.samplers import TrainSampler


def train_transform(root, **options):
    split = Split(str(root), ["a"], SampleIndex.from_pairs([("a/x.jpg", 0)]))
    data = DataConfig(root=str(root), batch_size=1, workers=0, **options)
    return build_train_loader(split, data, TrainSampler(1, 1, 0, 1, 0), 1, False).dataset.transform


def _policy(transform):
    return type(transform.augment).__name__, getattr(transform.augment, "magnitude", None)


# (options, what the transform holds of them, its value with the defaults, its value with the options)
TRANSFORM_OPTIONS = {
    "hflip": (dict(hflip=False), lambda t: t.hflip, True, False),
    "lighting": (dict(lighting=0.0), lambda t: t.lighting, 0.1, 0.0),
    "train_crop": (dict(train_crop=96), lambda t: t.size, 224, 96),
    "crop_scale": (dict(crop_scale=(0.3, 0.9)), lambda t: t.scale, (0.08, 1.0), (0.3, 0.9)),
    "crop_ratio": (dict(crop_ratio=(0.5, 2.0)), lambda t: t.ratio, (3 / 4, 4 / 3), (0.5, 2.0)),
    "train_decode_exact": (dict(train_decode="exact"), lambda t: (t.reduce, t.fast), (True, True), (False, False)),
    "train_decode_reduced": (dict(train_decode="reduced"), lambda t: (t.reduce, t.fast), (True, True),
                             (True, False)),
    "auto_augment_ra": (dict(auto_augment="ra", ra_magnitude=5), _policy, ("NoneType", None), ("RandAugment", 5)),
    "auto_augment_ta_wide": (dict(auto_augment="ta_wide"), _policy, ("NoneType", None), ("TrivialAugmentWide", None)),
}


@pytest.mark.parametrize("option", TRANSFORM_OPTIONS)
def test_each_data_option_reaches_the_training_transform(tmp_path, option):
    options, held, default, value = TRANSFORM_OPTIONS[option]
    assert held(train_transform(tmp_path)) == default
    assert held(train_transform(tmp_path, **options)) == value


@pytest.mark.parametrize("workers", [0, 2])
def test_data_workers_is_the_training_loaders_count_of_processes_kept_across_epochs(tmp_path, workers):
    split = Split(str(tmp_path), ["a"], SampleIndex.from_pairs([("a/x.jpg", 0)]))
    data = DataConfig(root=str(tmp_path), batch_size=1, workers=workers)
    loader = build_train_loader(split, data, TrainSampler(1, 1, 0, 1, 0), 1, False)
    assert (loader.num_workers, loader.persistent_workers) == (workers, workers > 0)
