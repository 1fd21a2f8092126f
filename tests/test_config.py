"""The real config, composed as the apps compose it."""
import dataclasses

import pytest
from omegaconf import OmegaConf

from fishnet_train.config import TrainConfig, register_configs, to_options, to_plain
from fishnet_train.errors import UserError
from fishnet_train.models import list_models
from fishnet_train.validation import check_options as validate

from .helpers import ROOT
from .helpers import compose_eval as _compose_eval
from .helpers import compose_train as _compose_train


def compose_train(*overrides: str):
    return _compose_train("data.root=/data", *overrides)


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))


def test_every_model_has_a_group_option_and_every_option_a_model():
    assert group_options("model") == sorted(list_models())


def test_every_optimizer_the_check_accepts_has_a_group_file():
    from fishnet_train.validation import OPTIMIZERS

    assert group_options("optim") == sorted(OPTIMIZERS)


@pytest.mark.parametrize("group, option", [
    (group, option) for group in ("model", "data", "optim", "schedule", "experiment") for option in group_options(group)
])
def test_every_option_of_every_group_composes_and_validates(group, option):
    options = to_options(compose_train(f"{group}={option}"))
    assert isinstance(options, TrainConfig)
    validate(options)


def test_group_files_and_presets_restate_no_default_of_the_schema():
    defaults = to_plain(TrainConfig(data=dataclasses.replace(TrainConfig().data, root="/data")))
    for path in (ROOT / "conf").glob("[!h]*/*.yaml"):
        for section, values in (OmegaConf.to_container(OmegaConf.load(path)) or {}).items():
            if section == "defaults":
                continue
            if path.parent.name != "experiment":
                section, values = path.parent.name, {section: values}
            for key, value in values.items():
                if key == "name" and path.parent.name != "experiment":
                    continue  # each option states its own name, the one the code switches on
                assert defaults[section][key] != value, f"{path.name} restates {section}.{key}={value}"


def test_defaults_are_the_papers_fishnet150_recipe():
    cfg = compose_train()
    assert cfg.model.name == "fishnet150" and cfg.data.batch_size == 256 and cfg.optim.lr == 0.1
    assert cfg.optim.momentum == 0.9 and cfg.optim.weight_decay == 1e-4 and cfg.optim.decay_norm_and_bias
    assert list(cfg.schedule.milestones) == [30, 60, 90] and cfg.trainer.epochs == 100
    assert list(cfg.data.crop_scale) == [0.08, 1.0] and cfg.data.lighting == 0.1


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_paper_presets_are_the_defaults_with_their_model():
    for name in list_models():
        assert to_options(compose_train(f"experiment={name}_paper")) == to_options(compose_train(f"model={name}"))


@pytest.mark.parametrize("generic", ["paper", "cosine_ls", "modern"])
def test_generic_presets_with_the_default_model_are_their_fishnet150_presets(generic):
    generic_options = to_options(compose_train(f"experiment={generic}"))
    assert generic_options == to_options(compose_train(f"experiment=fishnet150_{generic}"))


def test_the_modern_preset_is_torchvisions_recipe_as_documented():
    o = to_options(compose_train("experiment=fishnet201_modern"))
    d, m = o.data, o.model
    assert (m.name, o.trainer.epochs, d.batch_size, o.optim.name, o.optim.lr, o.optim.momentum) == (
        "fishnet201", 600, 1024, "sgd", 0.5, 0.9)
    assert (o.optim.weight_decay, o.optim.decay_norm_and_bias, o.loss.label_smoothing) == (2e-5, False, 0.1)
    assert (o.schedule.name, o.schedule.warmup_epochs, o.schedule.warmup_start_factor) == ("cosine", 5, 0.01)
    assert (d.auto_augment, d.random_erase, d.mixup_alpha, d.cutmix_alpha, d.repeated_aug, d.lighting) == (
        "ta_wide", 0.1, 0.2, 1.0, 4, 0.0)
    assert (d.train_crop, d.val_resize, d.val_crop) == (176, 232, 224)
    assert m.ema_every_steps == 32 and m.ema_decay == pytest.approx(1 - 2e-5 * 8 * 128 * 32 / 600, abs=1e-6)
    assert o.trainer.best_by == "ema_top1"


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
    ("data.format=tar", "data.format"),
    ("data.train_decode=lossy", "data.train_decode"),
    ("data.stage_dir=/local/shards", "data.stage_dir=/local/shards copies shards, but data.format=folder"),
    ("model.drop_rate=1.5", "model.drop_rate"),
    ("data.workers=-1", "data.workers"),
    ("data.crop_scale=[0.5,1.5]", "data.crop_scale"),
    ("trainer.eval_every=0", "trainer.eval_every"),
    ("trainer.nan_policy=maybe", "trainer.nan_policy"),
    ("trainer.amp=fp8", "trainer.amp"),
])
def test_values_a_type_cannot_catch_are_validated(override, message):
    with pytest.raises(UserError, match=message):
        validate(to_options(compose_train(override)))


def test_eval_config_takes_the_model_from_the_checkpoint_by_default():
    cfg = _compose_eval("checkpoint=x.pt", "data.root=/data")
    assert cfg.model.name is None and cfg.model.num_classes is None
    assert cfg.data.val_resize == 256 and cfg.data.val_crop == 224
    assert OmegaConf.select(cfg, "eval.predictions") is None


def test_the_submitit_launcher_has_srun_give_each_task_its_cpus():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_module

    register_configs()
    with initialize_config_module("fishnet_train.conf", version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=fishnet_slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher.cpus_per_task == 10
    assert "export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK" in cfg.hydra.launcher.setup
