"""A config fuzzer: overrides drawn from the schema either stop with one line before any step,
or the run trains a step (fishnet-eval: evaluates). Fixed seed in CI; ``make fuzz`` runs more.

Values are drawn per field type, with boundaries, wrong types and nonsense; sizes stay small so
that a valid draw trains in well under a second. Keys that only slow a run down (compile, several
processes) or name files are drawn from a few values.
"""
from __future__ import annotations

import os
import typing

import pytest
import torch
from hydra.errors import HydraException
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from omegaconf.errors import OmegaConfBaseException

from fishnet_train.apps.evaluator import run_eval
from fishnet_train.cli.common import one_line
from fishnet_train.config import EvalConfig, TrainConfig, to_options
from fishnet_train.errors import UserError
from fishnet_train.training.loop import TrainingStopped
from fishnet_train.training.trainer import train
from fishnet_train.validation import check_options

from .conftest import write_image_folder
from .helpers import TINY_TRAIN, compose_eval, compose_train

SCALE = float(os.environ.get("FISHNET_FUZZ_SCALE", "1"))  # make fuzz: 20


def fuzz(examples: int) -> settings:
    """A fixed seed (``derandomize``), so CI draws the same examples every run."""
    return settings(max_examples=int(examples * SCALE), deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


NUMBERS = ["-1", "0", "1e-9", "0.1", "0.5", "0.999", "1", "1.5", "3", "100", "nan", "inf", "-inf", "-0.0"]
INTEGERS = ["-1", "0", "1", "2", "3", "5", "7", "31", "32", "33", "48", "9223372036854775808"]
WRONG = ["x", "[]", "[1,2]", "{a: 1}", "''"]
SPECIAL = {  # keys whose useful values are few, or which are slow at large values
    "data.workers": ["-1", "0", "1"],
    "data.bad_images": ["skip", "error", "ignore"],
    "data.format": ["folder", "shards", "tar"],
    "data.train_decode": ["fast", "reduced", "exact", "lossy"],
    "data.index_cache": ["auto", "null"],  # a drawn path would be written into the working directory
    "data.stage_dir": ["null", "/nonexistent/stage"],
    "model.name": ["fishnet99", "fishnet42", "null"],
    "model.pretrained": ["null", "/nonexistent/w.pt"],
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
    "trainer.resume": ["auto", "null", "/nonexistent/last.pt"],
    "trainer.nan_policy": ["stop", "skip", "ignore"],
    "trainer.host_allocator": ["keep_freed", "system", "jemalloc"],
    "eval.predictions": ["null"],
}
FIXED = {"data.root", "checkpoint"}


def field_values(key: str, hint: typing.Any) -> list[str]:
    if key in SPECIAL:
        return SPECIAL[key]
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
        values = ["x", ""]
    return values + (["null"] if optional else []) + WRONG[:2]


def schema_values(schema: type) -> dict[str, list[str]]:
    """Every key of ``schema`` with the values to draw for it."""
    out = {}
    for section, section_type in typing.get_type_hints(schema).items():
        if section in FIXED:
            continue
        for name, hint in typing.get_type_hints(section_type).items():
            out[f"{section}.{name}"] = field_values(f"{section}.{name}", hint)
    return out


TRAIN_KEYS = schema_values(TrainConfig)
EVAL_KEYS = schema_values(EvalConfig)


def overrides_from(keys: dict[str, list[str]]) -> st.SearchStrategy[list[str]]:
    pair = st.sampled_from(sorted(keys)).flatmap(lambda k: st.tuples(st.just(k), st.sampled_from(keys[k])))
    return st.lists(pair, min_size=1, max_size=3, unique_by=lambda kv: kv[0]).map(
        lambda pairs: [f"{k}={v}" for k, v in pairs])


class FirstStep(Exception):
    pass


def first_step(progress) -> None:
    raise FirstStep


def refused_in_one_line(error: BaseException) -> bool:
    line = one_line(error)
    return bool(line.strip()) and "\n" not in line and "Traceback" not in line


@pytest.fixture(scope="module")
def fuzz_data(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("fuzz") / "data", classes=3, train_per_class=4, val_per_class=2,
                              size=36)


# Speed, not meaning: small crops and one epoch unless the draw says otherwise.
BASE = [*TINY_TRAIN, "trainer.epochs=1", "trainer.device=cpu", "trainer.clip_grad_norm=null"]


@pytest.mark.slow  # about 20 s each: with the slow tests, at the same scale
@fuzz(80)
@given(overrides=overrides_from(TRAIN_KEYS))
def test_a_drawn_train_config_is_refused_in_one_line_or_trains_a_step(overrides, fuzz_data, tmp_path_factory):
    try:
        options = to_options(compose_train(*BASE, f"data.root={fuzz_data}", *overrides))
        check_options(options, world_size=1)
    except (HydraException, OmegaConfBaseException, UserError) as e:
        assert refused_in_one_line(e), (overrides, e)
        event("refused by the config check")
        return
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        train(options, str(tmp_path_factory.mktemp("run")), after_step=first_step)
        raise AssertionError(f"{overrides}: the run ended without the hook seeing a step")
    except FirstStep:
        event("trained a step")
    except TrainingStopped as e:  # a non-finite first loss: the documented stop
        assert refused_in_one_line(e), (overrides, e)
        event("stopped by a non-finite loss")
    except UserError as e:  # found before any step: the hook was not reached
        assert refused_in_one_line(e), (overrides, e)
        event("refused at the job's start")
    finally:
        torch.use_deterministic_algorithms(deterministic)


@pytest.fixture(scope="module")
def fuzz_checkpoint(fuzz_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("trained")
    train(to_options(compose_train(*BASE, f"data.root={fuzz_data}", "trainer.max_steps_per_epoch=1")), str(run_dir))
    return run_dir / "checkpoints" / "last.pt"


@pytest.mark.slow  # about 20 s each: with the slow tests, at the same scale
@fuzz(50)
@given(overrides=overrides_from(EVAL_KEYS))
def test_a_drawn_eval_config_is_refused_in_one_line_or_evaluates(overrides, fuzz_data, fuzz_checkpoint,
                                                                 tmp_path_factory):
    try:
        options = to_options(compose_eval(f"checkpoint={fuzz_checkpoint}", f"data.root={fuzz_data}",
                                          "trainer.device=cpu", "data.workers=0", *overrides))
        check_options(options, world_size=1)
    except (HydraException, OmegaConfBaseException, UserError) as e:
        assert refused_in_one_line(e), (overrides, e)
        event("refused by the config check")
        return
    out = tmp_path_factory.mktemp("eval")
    try:
        result = run_eval(options, str(out), overridden=[o.split("=")[0] for o in overrides])
    except UserError as e:
        assert refused_in_one_line(e), (overrides, e)
        event("refused at the job's start")
        return
    assert result.images == 6 and (out / "eval.json").is_file()
    event("evaluated")
