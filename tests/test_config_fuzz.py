"""A config fuzzer: overrides drawn from the schema are refused with one line naming a drawn key, or
the run trains a step (fishnet-eval: evaluates), as tests/config_expectation.py expects of each draw.
Fixed seed in CI; ``make fuzz`` runs more.

Values are drawn per field type, with boundaries, wrong types and nonsense; sizes stay small so
that a valid draw trains in well under a second. Keys that only slow a run down (compile, several
processes) are drawn from a few values; keys that name files or folders from the fixtures' real ones
(``<name>`` placeholders, replaced when drawn) and ones that are not there or of the wrong kind.
"""
from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
from hydra.errors import HydraException
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from omegaconf.errors import OmegaConfBaseException

from fishnet_train.apps.evaluator import run_eval
from fishnet_train.cli.common import one_line
from fishnet_train.config import EvalConfig, TrainConfig, to_options
from fishnet_train.data.shards import write_shards
from fishnet_train.errors import UserError
from fishnet_train.training.loop import TrainingStopped
from fishnet_train.training.trainer import train
from fishnet_train.validation import check_options

from .config_expectation import (
    ARCH, BATCH, CLASSES, CROP, EPOCHS, EVAL_BATCH, EVAL_RULES, LR, TRAIN_IMAGES, TRAIN_RULES, Expectation, expect,
    judge_acceptance, judge_refusal,
)
from .conftest import write_image_folder
from .helpers import TINY_TRAIN, Crash, compose_eval, compose_train, crash_at

SCALE = float(os.environ.get("FISHNET_FUZZ_SCALE", "1"))  # make fuzz: 20


def fuzz(examples: int) -> settings:
    """A fixed seed (``derandomize``), so CI draws the same examples every run."""
    return settings(max_examples=int(examples * SCALE), deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


NUMBERS = ["-1", "0", "1e-9", "0.1", "0.5", "0.999", "1", "1.5", "3", "100", "nan", "inf", "-inf", "-0.0"]
INTEGERS = ["-1", "0", "1", "2", "3", "5", "7", "31", "32", "33", "48", "9223372036854775808"]
WRONG = ["x", "[]", "[1,2]", "{a: 1}", "''"]
SPECIAL = {  # keys whose useful values are few (the documented choices and one more), or which are slow at large values
    "data.workers": ["-1", "0", "1"],
    "name": ["null", "paper", "a/b", "..", "-x"],
    "data.bad_images": ["skip", "error", "ignore"],
    "data.format": ["folder", "shards", "tar"],
    "data.train_decode": ["fast", "reduced", "exact", "lossy"],
    "model.name": ["fishnet99", "fishnet150", "fishnet42", "null"],
    "model.classifier_init": ["auto", "released", "zeros", "xavier"],
    "schedule.name": ["step", "cosine", "linear"],
    "schedule.milestones": ["[]", "[1]", "[1,2]", "[2,1]", "[0]", "[1,1]", "[30,60,90]", "3"],
    "optim.name": ["sgd", "adamw", "lamb", "lars", "adam"],
    "loss.name": ["ce", "bce", "focal"],
    "data.auto_augment": ["ra", "ta_wide", "aa", "rand", "null"],
    "data.progressive_epochs": ["[0,0]", "[0,1]", "[1,0]", "[0,5]", "[0]", "x"],
    "trainer.best_by": ["top1", "ema_top1", "top5"],
    "trainer.device": ["cpu", "auto", "cuda", "tpu"],
    "trainer.devices": ["auto", "1", "0", "-1", "x"],
    "trainer.amp": ["none", "bf16", "fp16", "fp8"],
    "trainer.compile": ["false"],
    "trainer.nan_policy": ["stop", "skip", "ignore"],
    "trainer.host_allocator": ["keep_freed", "system", "jemalloc"],
    "eval.tta": ["none", "flip", "mirror"],
    "eval.set": ["auto", "val", "real", "imagenet-a", "imagenet-v2", "cifar10"],
    "tracking.loggers": ["[]", "[tensorboard]", "[tensorboard,tensorboard]", "[comet]", "tensorboard"],
    "eval.tracked_run": ["same", "new", "old"],
    "tracking.mlflow_uri": ["null", "http://127.0.0.1:9", "http://ana:pw@127.0.0.1:9"],
    "tracking.mlflow_experiment": ["fishnet-train", "' '"],
    "tracking.wandb_project": ["fishnet-train", "''"],
    "tracking.wandb_entity": ["null", "team"],
    "tracking.wandb_mode": ["online", "offline", "disabled"],
}
# Keys that name a file or folder: the fixtures' real ones (fuzz_paths) and ones missing or of the wrong kind.
PATHS = {
    "checkpoint": ["<checkpoint>", "<missing>/c.pt", "<text_file>"],
    "data.root": ["<data>", "<missing>", "<empty>", "<text_file>"],
    "model.pretrained": ["null", "<checkpoint>", "<missing>/w.pt", "<text_file>"],
    "trainer.resume": ["auto", "null", "<checkpoint>", "<missing>/last.pt", "<text_file>"],
    "data.index_cache": ["auto", "null", "<index_cache>", "<text_file>/index.npz"],
    "data.stage_dir": ["null", "<stage_dir>", "<text_file>/stage"],
    "eval.predictions": ["null", "<out>/predictions.csv", "<missing>/predictions.csv"],
    "eval.real_labels": ["null", "<real_labels>", "<text_file>", "<missing>/real.json"],
    "eval.class_subset": ["null", "<class_subset>", "<other_subset>", "<missing>/subset.txt"],
}


def field_values(key: str, hint: typing.Any) -> list[str]:
    if key in SPECIAL:
        return SPECIAL[key]
    if key in PATHS:
        return PATHS[key]
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    if base is bool:
        values = ["true", "false", "maybe"]
    elif base is int:
        values = INTEGERS + ["1.5"]
    elif base is float:
        values = NUMBERS
    elif typing.get_origin(base) in (list, tuple):
        values = ["[]", "[0.5]", "[0.1,1.0]", "[1.0,0.1]", "[0,1]", "[0.5,0.5,0.5]", "[0.2,0.2,-1]", "[nan,1,1]", "0.5"]
    else:
        raise AssertionError(f"{key}: a string key is drawn from its choices (SPECIAL) or from real paths (PATHS)")
    return values + (["null"] if optional else []) + WRONG[:2]


def schema_hints(schema: type) -> dict[str, typing.Any]:
    """Every key of ``schema`` (``section.name``, or ``name`` at the top) with its type."""
    out = {}
    for section, section_type in typing.get_type_hints(schema).items():
        if not dataclasses.is_dataclass(section_type):
            out[section] = section_type
            continue
        for name, hint in typing.get_type_hints(section_type).items():
            out[f"{section}.{name}"] = hint
    return out


TRAIN_HINTS = schema_hints(TrainConfig)
EVAL_HINTS = schema_hints(EvalConfig)
TRAIN_KEYS = {key: field_values(key, hint) for key, hint in TRAIN_HINTS.items()}
EVAL_KEYS = {key: field_values(key, hint) for key, hint in EVAL_HINTS.items()}


def draws_from(keys: dict[str, list[str]]) -> st.SearchStrategy[dict[str, str]]:
    """One to three keys, each with one of its values (placeholders not yet replaced)."""
    pair = st.sampled_from(sorted(keys)).flatmap(lambda k: st.tuples(st.just(k), st.sampled_from(keys[k])))
    return st.lists(pair, min_size=1, max_size=3, unique_by=lambda kv: kv[0]).map(dict)


def with_paths(draw: Mapping[str, str], paths: Mapping[str, Path]) -> list[str]:
    """The draw as overrides, its ``<name>`` placeholders replaced by the fixtures' paths."""
    overrides = []
    for key, value in draw.items():
        for name, path in paths.items():
            value = value.replace(f"<{name}>", str(path))
        assert "<" not in value, f"{key}={value}: no fixture for the placeholder"
        overrides.append(f"{key}={value}")
    return overrides


def judge_refused(e: Expectation, draw: Mapping[str, str], error: BaseException) -> None:
    line = one_line(error)
    assert line.strip() and "\n" not in line and "Traceback" not in line, (draw, error)
    judge_refusal(e, draw, line)


class FirstStep(Exception):
    pass


def first_step(progress) -> None:
    raise FirstStep


# Speed, not meaning: small crops and one epoch unless the draw says otherwise; no milestones, so that
# schedule.name=step runs on its own. config_expectation.py's numbers describe this run.
BASE = [*TINY_TRAIN, "trainer.epochs=1", "trainer.device=cpu", "trainer.clip_grad_norm=null", "schedule.milestones=[]"]


@pytest.fixture(scope="module")
def fuzz_data(tmp_path_factory):
    """The images as class folders and as shards, in one root: data.format may be either."""
    root = write_image_folder(tmp_path_factory.mktemp("fuzz") / "data", classes=CLASSES,
                              train_per_class=TRAIN_IMAGES // CLASSES, val_per_class=2, size=36)
    write_shards(str(root), str(root), shard_mb=1, progress=lambda *a: None)
    return root


@pytest.fixture(scope="module")
def fuzz_checkpoint(fuzz_data, tmp_path_factory):
    """last.pt of its first step (a run stopped at its second, in the middle of its only epoch): a resume has a
    step left."""
    run_dir = tmp_path_factory.mktemp("trained")
    options = to_options(compose_train(*BASE, f"data.root={fuzz_data}", "trainer.checkpoint_every_steps=1"))
    with pytest.raises(Crash):
        train(options, str(run_dir), after_step=crash_at(2))
    return run_dir / "checkpoints" / "last.pt"


@pytest.fixture(scope="module")
def fuzz_paths(fuzz_data, fuzz_checkpoint, tmp_path_factory) -> dict[str, Path]:
    """The real files and folders the placeholders of PATHS name."""
    root = tmp_path_factory.mktemp("paths")
    (root / "empty").mkdir()
    (root / "out").mkdir()
    (root / "notes.txt").write_text("not a checkpoint, a folder or JSON\n")
    (root / "real.json").write_text("[[0], [1], [2], [0], [1], [2]]")  # valid, but for ImageNet's val set
    (root / "subset.txt").write_text("".join(f"class_{k}\n" for k in range(CLASSES)))
    (root / "other_subset.txt").write_text("n01440764\n")
    return {"data": fuzz_data, "checkpoint": fuzz_checkpoint, "missing": root / "missing",
            "empty": root / "empty", "text_file": root / "notes.txt", "index_cache": root / "cache" / "index.npz",
            "stage_dir": root / "stage", "out": root / "out", "real_labels": root / "real.json",
            "class_subset": root / "subset.txt", "other_subset": root / "other_subset.txt"}


def test_a_value_valid_on_its_own_must_not_be_refused():
    draw = {"optim.lr": "0.5"}
    expected = expect(draw, TRAIN_HINTS, TRAIN_RULES)
    judge_acceptance(expected, draw)
    with pytest.raises(AssertionError, match="values valid on their own were refused"):
        judge_refusal(expected, draw, "optim.lr must be zero or more, got 0.5")


@pytest.mark.parametrize("draw, message, wrong_key", [
    ({"optim.lr": "-1"}, "optim.lr must be zero or more, got -1.0", "optim.lr_base_batch must be positive or null"),
    ({"trainer.epochs": "1.5"}, "trainer.epochs: Value '1.5' of type 'float' could not be converted to Integer",
     "trainer.eval_every must be positive"),
    ({"trainer.accum_steps": "5"}, "data.batch_size=6 does not split over 1 processes x trainer.accum_steps=5",
     "data.batch_size=6 does not split over 1 processes x 5 accumulation steps"),
    ({"model.pretrained": "<missing>/w.pt"}, "model.pretrained: checkpoint not found: /x/w.pt (check the path)",
     "checkpoint not found: /x/w.pt (check the path)"),
])
def test_a_value_invalid_on_its_own_must_be_refused_naming_its_key(draw, message, wrong_key):
    expected = expect(draw, TRAIN_HINTS, TRAIN_RULES)
    judge_refusal(expected, draw, message)
    with pytest.raises(AssertionError, match="names none of"):
        judge_refusal(expected, draw, wrong_key)
    with pytest.raises(AssertionError, match="invalid on their own"):
        judge_acceptance(expected, draw)


def test_a_known_interaction_may_refuse_values_valid_on_their_own_naming_what_it_names():
    draw = {"optim.nesterov": "true", "optim.momentum": "0"}
    expected = expect(draw, TRAIN_HINTS, TRAIN_RULES)
    judge_acceptance(expected, draw)
    judge_refusal(expected, draw, "optim.nesterov=true needs momentum; set optim.momentum above 0")
    with pytest.raises(AssertionError, match="names none of"):
        judge_refusal(expected, draw, "optim.momentum must be positive with nesterov")


def test_a_known_interaction_may_make_a_value_invalid_on_its_own_valid():
    draw = {"schedule.min_lr": "0.1", "optim.lr": "0.5"}  # alone, 0.1 is above the base's lr
    expected = expect(draw, TRAIN_HINTS, TRAIN_RULES)
    assert expected.invalid == {"schedule.min_lr"} and not expected.must_refuse
    judge_acceptance(expected, draw)


def test_a_real_file_is_valid_where_the_key_names_one_and_a_folder_is_not():
    assert not expect({"trainer.resume": "<checkpoint>"}, TRAIN_HINTS, TRAIN_RULES).may_refuse
    assert expect({"trainer.resume": "<text_file>"}, TRAIN_HINTS, TRAIN_RULES).must_refuse
    assert expect({"data.stage_dir": "<stage_dir>"}, TRAIN_HINTS, TRAIN_RULES).must_refuse  # data.format=folder
    assert not expect({"data.stage_dir": "<stage_dir>", "data.format": "shards"}, TRAIN_HINTS, TRAIN_RULES).must_refuse


def test_every_drawn_key_has_an_expectation():
    assert set(TRAIN_KEYS) == set(TRAIN_RULES) and set(EVAL_KEYS) == set(EVAL_RULES)


def test_the_numbers_the_expectation_assumes_are_the_base_runs():
    options = to_options(compose_train(*BASE, "data.root=/data"))
    d = options.data
    assert (d.batch_size, d.train_crop, d.val_resize, d.val_crop) == (BATCH, CROP, CROP, CROP)
    assert d.progressive_min_crop is None and d.progressive_epochs == (0, 0)
    assert (options.model.name, options.trainer.epochs, options.optim.lr) == (ARCH, EPOCHS, LR)
    assert (options.schedule.name, options.schedule.min_lr, options.schedule.warmup_epochs) == ("cosine", 0, EPOCHS)
    eval_options = to_options(compose_eval("checkpoint=c.pt", "data.root=/data"))
    assert eval_options.data.batch_size == EVAL_BATCH and eval_options.data.repeated_aug == 1


@pytest.mark.slow  # about 20 s each: with the slow tests, at the same scale
@fuzz(80)
@given(draw=draws_from(TRAIN_KEYS))
def test_a_drawn_train_config_is_refused_naming_a_drawn_key_or_trains_a_step(draw, fuzz_paths, tmp_path_factory):
    expected = expect(draw, TRAIN_HINTS, TRAIN_RULES)
    overrides = with_paths(draw, fuzz_paths)
    try:
        options = to_options(compose_train(*BASE, f"data.root={fuzz_paths['data']}", *overrides))
        check_options(options, world_size=1)
    except (HydraException, OmegaConfBaseException, UserError) as e:
        judge_refused(expected, draw, e)
        event("refused by the config check")
        return
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        train(options, str(tmp_path_factory.mktemp("run")), after_step=first_step)
        # Only a resume can find nothing left to train (its checkpoint is one step into the only epoch).
        assert draw.get("trainer.resume") == "<checkpoint>", f"{draw}: the run ended without the hook seeing a step"
        event("resumed with nothing left to train")
    except FirstStep:
        event("trained a step")
    except TrainingStopped as e:  # a non-finite first loss: the documented stop
        assert "\n" not in one_line(e), (draw, e)
        event("stopped by a non-finite loss")
    except UserError as e:  # found before any step: the hook was not reached
        judge_refused(expected, draw, e)
        event("refused at the job's start")
        return
    finally:
        torch.use_deterministic_algorithms(deterministic)
    judge_acceptance(expected, draw)


@pytest.mark.slow  # about 20 s each: with the slow tests, at the same scale
@fuzz(50)
@given(draw=draws_from(EVAL_KEYS))
def test_a_drawn_eval_config_is_refused_naming_a_drawn_key_or_evaluates(draw, fuzz_paths, tmp_path_factory):
    expected = expect(draw, EVAL_HINTS, EVAL_RULES)
    overrides = with_paths(draw, fuzz_paths)
    try:
        options = to_options(compose_eval(f"checkpoint={fuzz_paths['checkpoint']}", f"data.root={fuzz_paths['data']}",
                                          "trainer.device=cpu", "data.workers=0", *overrides))
        check_options(options, world_size=1)
    except (HydraException, OmegaConfBaseException, UserError) as e:
        judge_refused(expected, draw, e)
        event("refused by the config check")
        return
    out = tmp_path_factory.mktemp("eval")
    try:
        result = run_eval(options, str(out), overridden=list(draw))
    except UserError as e:
        judge_refused(expected, draw, e)
        event("refused at the job's start")
        return
    assert result.images == 6 and (out / "eval.json").is_file()
    judge_acceptance(expected, draw)
    event("evaluated")
