"""A run goes on as it was started: what a later job may change, what it may not, and the run's first line."""
from __future__ import annotations

import copy
import logging
import re
import shutil

import pytest

from fishnet_train.config import to_options, to_plain
from fishnet_train.errors import CheckpointError, UserError
from fishnet_train.recipe import MAY_CHANGE, RECIPE, check_same_recipe, flat
from fishnet_train.training.resume import Start, check_same_classes, start_line
from fishnet_train.training.trainer import train

from ..helpers import ROOT, Crash, compose_train, crash_at, saved_state, tiny_options

STEPS = ["trainer.epochs=2", "trainer.max_steps_per_epoch=2", "trainer.checkpoint_every_steps=1"]


def recipe(**changes) -> tuple[dict, dict]:
    saved = {"model": {"name": "fishnet99", "pretrained": None}, "optim": {"lr": 0.1, "betas": [0.9, 0.999]},
             "data": {"root": "/a", "workers": 8, "batch_size": 6, "format": "folder"},
             "trainer": {"epochs": 2, "seed": 0, "devices": "1", "log_every_steps": 100},
             "tracking": {"every_steps": 50}}
    now = flat(saved)
    now.update(changes)
    nested: dict = {}
    for key, value in now.items():
        head, *rest = key.split(".")
        nested.setdefault(head, {})[rest[0]] = value
    return saved, nested


@pytest.mark.parametrize("key, value", [
    ("data.root", "/local/ssd/imagenet"), ("data.workers", 2), ("data.format", "shards"), ("trainer.devices", "8"),
    ("trainer.log_every_steps", 10), ("tracking.every_steps", 5), ("model.pretrained", "/w.pt"),
    ("optim.betas", (0.9, 0.999)),  # a tuple in the options, a list in the checkpoint
])
def test_a_resubmission_may_change_processes_loader_data_location_and_logging(key, value):
    check_same_recipe(*recipe(**{key: value}), "/runs/x")


@pytest.mark.parametrize("key, value, shown", [
    ("optim.lr", 0.2, "optim.lr=0.1, this command has optim.lr=0.2"),
    ("model.name", "fishnet150", "model.name=fishnet99, this command has model.name=fishnet150"),
    ("data.batch_size", 12, "data.batch_size=6, this command has data.batch_size=12"),
    ("trainer.epochs", 3, "trainer.epochs=2, this command has trainer.epochs=3"),
    ("trainer.seed", 1, "trainer.seed=0, this command has trainer.seed=1"),
])
def test_a_resubmission_that_changes_the_recipe_is_refused_in_one_line_naming_the_key(key, value, shown):
    with pytest.raises(UserError) as refused:
        check_same_recipe(*recipe(**{key: value}), "/runs/x")
    message = str(refused.value)
    assert message == (f"/runs/x was started with {shown}: a resubmitted run keeps its recipe; set {key}="
                       f"{shown.split('=')[1].split(',')[0]}, or change it deliberately with "
                       "trainer.resume=/runs/x/checkpoints/last.pt")


def real_recipe() -> dict:
    return to_plain(to_options(compose_train("data.root=/d")))


def changed(config: dict, key: str) -> dict:
    """``config`` with ``key`` (dotted) given another value."""
    out = copy.deepcopy(config)
    *parents, leaf = key.split(".")
    node = out
    for part in parents:
        node = node[part]
    value = node[leaf]
    node[leaf] = (not value if isinstance(value, bool) else value + 1 if isinstance(value, (int, float))
                  else [*value, 1] if isinstance(value, (list, tuple)) else f"{value}-other")
    return out


@pytest.mark.parametrize("key", MAY_CHANGE)
def test_each_key_a_resubmission_may_change_goes_on(key):
    saved = real_recipe()
    check_same_recipe(saved, changed(saved, key), "/runs/x")


@pytest.mark.parametrize("root", RECIPE)
def test_each_part_of_the_recipe_is_refused_when_changed(root):
    saved = real_recipe()
    key = next(k for k in flat(saved) if (k == root or k.startswith(root + ".")) and not any(
        k == m or k.startswith(m + ".") for m in MAY_CHANGE))
    with pytest.raises(UserError, match=f"^/runs/x was started with {re.escape(key)}="):
        check_same_recipe(saved, changed(saved, key), "/runs/x")


def test_the_clusters_page_lists_what_may_change_and_what_is_refused():
    text = (ROOT / "docs" / "clusters.md").read_text()
    table = text[text.index("| may change | refused"):].split("\n\n")[0]
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    may, refused = " ".join(r[0] for r in rows), " ".join(r[1] for r in rows)
    for key in MAY_CHANGE:
        assert f"`{key}`" in may or f"`{key}`" in refused.split("(but ")[1], key  # model.* lists its exceptions
    for root in RECIPE:
        assert f"`{root}.*`" in refused or f"`{root}`" in refused or root == "data", root


def test_keys_a_checkpoint_predates_are_not_compared():
    saved, now = recipe()
    now["optim"]["new_key"] = 1
    check_same_recipe(saved, now, "/runs/x")
    check_same_recipe(None, now, "/runs/x")


def test_the_classes_must_be_the_runs_own():
    check_same_classes(["a", "b"], ["a", "b"])
    check_same_classes(None, ["a", "b"])  # a checkpoint without them
    with pytest.raises(CheckpointError, match="data.root has 'c' where it had 'b'"):
        check_same_classes(["a", "b"], ["a", "c"])
    with pytest.raises(CheckpointError, match="data.root has 3 classes where it had 2"):
        check_same_classes(["a", "b"], ["a", "b", "z"])


def test_the_first_line_says_new_or_where_it_resumes_and_how_another_job_continues_a_launcher_named_run(tmp_path):
    named = tmp_path / "paper"
    assert start_line(str(named), Start(None, None)) == f"run directory {named}: a new run"
    resumed = start_line(str(named), Start(str(named / "last.pt"), None, 2, 5))
    assert resumed == f"run directory {named}: resumes epoch 3, step 5 of it, from {named / 'last.pt'}"
    for auto in ("slurm-7-1a2b3c4d", "torchrun-abc"):
        line = start_line(str(tmp_path / auto), Start(None, None))
        assert line.endswith(f"; to continue it from another job, pass hydra.run.dir={tmp_path / auto} "
                             "(or name runs with name=)")
        assert start_line(str(tmp_path / auto), Start(None, None), named=True) == \
            f"run directory {tmp_path / auto}: a new run"  # name=slurm-...: the user's own name


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_a_rerun_resumes_and_says_so_first_and_a_changed_recipe_is_refused_before_any_step(
        image_folder, tmp_path, caplog):
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="fishnet_train"), pytest.raises(Crash):
        train(tiny_options(image_folder, *STEPS), str(run_dir), after_step=crash_at(3))  # in epoch 2
    assert caplog.records[0].getMessage() == f"run directory {run_dir}: a new run"
    stopped = saved_state(run_dir)["progress"]
    with pytest.raises(UserError, match=f"^{run_dir} was started with optim.lr=.*this command has optim.lr=0.5: "):
        train(tiny_options(image_folder, *STEPS, "optim.lr=0.5"), str(run_dir))
    assert saved_state(run_dir)["progress"] == stopped  # refused before any step
    moved = tmp_path / "moved"
    shutil.copytree(image_folder, moved)  # the data copied elsewhere, as to a node's local disk: goes on
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fishnet_train"):
        train(tiny_options(moved, *STEPS, "data.workers=0"), str(run_dir))
    first = caplog.records[0].getMessage()
    assert first == (f"run directory {run_dir}: resumes epoch 2, step {stopped['epoch_step']} of it, from "
                     f"{run_dir / 'checkpoints' / 'last.pt'}")
    assert saved_state(run_dir)["progress"]["step"] == 4


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_a_resume_onto_other_classes_is_refused(image_folder, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(Crash):
        train(tiny_options(image_folder, *STEPS), str(run_dir), after_step=crash_at(3))
    for split in ("train", "val"):
        (image_folder / split / "class_2").rename(image_folder / split / "class_9")
    with pytest.raises(CheckpointError, match="trainer.resume: the run was trained on other classes: data.root has "
                                              "'class_9' where it had 'class_2'"):
        train(tiny_options(image_folder, *STEPS), str(run_dir))


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_the_refusals_advice_goes_on_with_the_change(image_folder, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(Crash):
        train(tiny_options(image_folder, *STEPS), str(run_dir), after_step=crash_at(3))
    with pytest.raises(UserError, match="change it deliberately with trainer.resume=(\\S+)$") as refused:
        train(tiny_options(image_folder, *STEPS, "optim.lr=0.5"), str(run_dir))
    advice = str(refused.value).rsplit("trainer.resume=", 1)[1]
    train(tiny_options(image_folder, *STEPS, "optim.lr=0.5", f"trainer.resume={advice}"), str(run_dir))
    assert saved_state(run_dir)["progress"]["step"] == 4 and saved_state(run_dir)["config"]["optim"]["lr"] == 0.5
