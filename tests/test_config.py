"""The real config, composed as the apps compose it."""
import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from fishnet_train.config import register_configs, validate_config
from fishnet_train.errors import UserError

register_configs()
PRESETS = ["fishnet99_paper", "fishnet150_paper", "fishnet201_paper", "fishnet150_cosine_ls",
           "fishnet201_cosine_ls", "demo"]


def compose_train(*overrides: str):
    with initialize_config_module("fishnet_train.conf", version_base="1.3"):
        return compose("train", overrides=["data.root=/data", *overrides])


@pytest.mark.parametrize("group, options", [
    ("model", ["fishnet99", "fishnet150", "fishnet201"]), ("data", ["imagenet", "folder"]),
    ("optim", ["sgd"]), ("schedule", ["step", "cosine"]), ("experiment", PRESETS),
])
def test_every_option_of_every_group_composes_and_validates(group, options):
    for option in options:
        cfg = compose_train(f"{group}={option}")
        validate_config(cfg)


def test_defaults_are_the_papers_fishnet150_recipe():
    cfg = compose_train()
    assert cfg.model.name == "fishnet150" and cfg.data.batch_size == 256 and cfg.optim.lr == 0.1
    assert cfg.optim.momentum == 0.9 and cfg.optim.weight_decay == 1e-4 and cfg.optim.decay_norm_and_bias
    assert list(cfg.schedule.milestones) == [30, 60, 90] and cfg.trainer.epochs == 100
    assert list(cfg.data.crop_scale) == [0.08, 1.0] and cfg.data.lighting == 0.1


@pytest.mark.parametrize("preset, model, epochs, schedule, smoothing", [
    ("fishnet99_paper", "fishnet99", 100, "step", 0.0),
    ("fishnet201_paper", "fishnet201", 100, "step", 0.0),
    ("fishnet150_cosine_ls", "fishnet150", 200, "cosine", 0.1),
    ("fishnet201_cosine_ls", "fishnet201", 200, "cosine", 0.1),
])
def test_presets_set_model_schedule_and_smoothing(preset, model, epochs, schedule, smoothing):
    cfg = compose_train(f"experiment={preset}")
    assert (cfg.model.name, cfg.trainer.epochs, cfg.schedule.name, cfg.loss.label_smoothing) == (
        model, epochs, schedule, smoothing)


def test_command_line_overrides_beat_presets():
    assert compose_train("experiment=demo", "trainer.epochs=3").trainer.epochs == 3


def test_typo_and_wrong_type_fail_at_composition():
    with pytest.raises(Exception, match="epoch"):
        compose_train("trainer.epoch=3")
    with pytest.raises(Exception, match="many"):
        compose_train("trainer.epochs=many")


@pytest.mark.parametrize("override, message", [
    ("trainer.devices=zero", "trainer.devices"),
    ("schedule.name=linear", "schedule.name"),
    ("data.bad_images=ignore", "data.bad_images"),
    ("model.drop_rate=1.5", "model.drop_rate"),
    ("data.workers=-1", "data.workers"),
])
def test_values_a_type_cannot_catch_are_validated(override, message):
    with pytest.raises(UserError, match=message):
        validate_config(compose_train(override))


def test_eval_config_takes_the_model_from_the_checkpoint_by_default():
    with initialize_config_module("fishnet_train.conf", version_base="1.3"):
        cfg = compose("eval", overrides=["checkpoint=x.pt", "data.root=/data"])
    assert cfg.model.name is None and cfg.model.num_classes is None
    assert cfg.data.val_resize == 256 and cfg.data.val_crop == 224
    assert OmegaConf.select(cfg, "eval.predictions") is None
