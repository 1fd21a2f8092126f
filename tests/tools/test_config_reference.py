"""docs/configuration.md is generated from the schema and the group files, and kept current."""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from typing import Optional

import pytest

from ..helpers import ROOT

spec = importlib.util.spec_from_file_location("config_reference", ROOT / "tools" / "config_reference.py")
reference = importlib.util.module_from_spec(spec)
sys.modules["config_reference"] = reference  # dataclasses look their module up while the file runs
spec.loader.exec_module(reference)


def rows(page: str, command: str) -> dict[str, list[str]]:
    """The key table of one command's section: key -> [type, default, meaning]."""
    section = page.split(f"## {command}\n", 1)[1].split("\n## ", 1)[0]
    cells = [line.strip("|").split(" | ") for line in section.splitlines() if line.startswith("| `")]
    return {c[0].strip(" `"): [c[1], c[2].strip("`"), c[3]] for c in cells}


@pytest.fixture(scope="module")
def page() -> str:
    return reference.render()


def test_the_checked_in_page_is_what_the_generator_writes(page):
    assert (ROOT / "docs" / "configuration.md").read_text() == page, \
        "docs/configuration.md is stale: run python tools/config_reference.py"


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_check_mode_fails_on_a_stale_page_and_passes_on_a_current_one(tmp_path, capsys):
    stale = tmp_path / "configuration.md"
    stale.write_text("# Configuration\n")
    assert reference.main(["--check"], page=stale) == 1
    assert "out of date" in capsys.readouterr().err
    assert reference.main([], page=stale) == 0
    assert reference.main(["--check"], page=stale) == 0


def test_every_key_of_each_command_is_listed_with_its_own_default(page):
    from .. import helpers

    for command, config_name in (("fishnet-train", "train"), ("fishnet-eval", "eval"),
                                 ("fishnet-predict", "predict"), ("fishnet-export", "export")):
        cfg = helpers.compose_app(config_name)
        leaves = set(_leaf_keys(cfg))
        assert set(rows(page, command)) == leaves, command
    assert rows(page, "fishnet-train")["data.batch_size"][1] == "256"
    assert rows(page, "fishnet-eval")["data.batch_size"][1] == "100"
    assert rows(page, "fishnet-predict")["data.root"][1] == "(unused)"
    assert rows(page, "fishnet-train")["data.root"][1] == "???"
    assert rows(page, "fishnet-train")["optim.weight_decay"][:2] == ["float", "0.0001"]
    assert rows(page, "fishnet-train")["trainer.clip_grad_norm"][0] == "float or null"
    assert rows(page, "fishnet-train")["data.crop_scale"][:2] == ["list of float", "[0.08, 1.0]"]


def _leaf_keys(node, prefix=""):
    from omegaconf import DictConfig

    for key in node:
        value = node._get_node(key)
        if isinstance(value, DictConfig):
            yield from _leaf_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_defaults_are_the_composed_config_not_the_bare_schema(monkeypatch):
    """A group file's value shows: the page reads the config as the command composes it."""
    real = reference.composed
    monkeypatch.setattr(reference, "composed", lambda name: real(name) if name != "train" else _with_lr(real(name)))
    assert rows(reference.render(), "fishnet-train")["optim.lr"][1] == "0.005"


def _with_lr(cfg):
    cfg.optim.lr = 0.005
    return cfg


def test_a_field_comment_is_the_lines_above_it_then_its_own():
    @dataclass(frozen=True)
    class Example:
        # first line
        # second line
        a: int = 1  # trailing
        b: Optional[str] = None  # only trailing

        c: tuple[int, ...] = field(default_factory=tuple)

    comments = reference.field_comments(Example)
    assert comments == {"a": "first line second line trailing", "b": "only trailing", "c": ""}


def test_a_key_without_a_comment_is_refused_by_name():
    @dataclass(frozen=True)
    class Undocumented:
        size: int = 3

    from omegaconf import OmegaConf

    with pytest.raises(SystemExit, match="Undocumented.size has no comment"):
        list(reference.schema_keys(Undocumented, OmegaConf.create({"size": 3})))


def test_every_group_file_is_shown_whole(page):
    files = sorted(p for p in (ROOT / "conf").rglob("*.yaml") if p.parent != ROOT / "conf")
    assert {str(p.parent.relative_to(ROOT / "conf")) for p in files} == set(reference.GROUPS)
    for path in files:
        group = path.parent.relative_to(ROOT / "conf")
        assert f"#### {group}={path.stem}\n\n```yaml\n{path.read_text().rstrip()}\n```" in page


def test_a_command_schema_without_a_docstring_is_refused():
    @dataclass(frozen=True)
    class Bare:
        size: int = 3  # a size

    with pytest.raises(SystemExit, match="Bare has no docstring"):
        reference.command_section("fishnet-bare", "train", Bare)
