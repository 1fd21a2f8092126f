"""Key map between this project's FishNet and the authors' released checkpoints.

Both layouts name the same tensors; they differ in module paths only. Each pair below maps
a released prefix to ours, and the rest of the key (``bn1.weight``, ``shortcut.2.weight``,
``3.running_mean``...) is shared.
"""
from __future__ import annotations

from functools import lru_cache

import torch

RELEASED_MARKER = "fish.fish."


@lru_cache(maxsize=1)
def prefix_pairs() -> tuple[tuple[str, str], ...]:
    """(released prefix, our prefix) pairs; no prefix on either side is a prefix of another."""
    pairs = []
    for i in (1, 2, 3):
        pairs += [(f"conv{i}.0.", f"stem.conv{i}."), (f"conv{i}.1.", f"stem.bn{i}.")]
    for i in range(3):
        pairs.append((f"fish.fish.{i}.0.", f"tail.{i}.blocks."))
    pairs += [
        ("fish.fish.3.0.", "bridge.reduce."),
        ("fish.fish.3.1.", "bridge.expand."),
        ("fish.fish.3.2.", "bridge.blocks."),
        ("fish.fish.3.3.0.", "bridge.se."),
    ]
    for stage in range(4, 10):
        group, j = ("body", stage - 4) if stage < 7 else ("head", stage - 7)
        pairs += [
            (f"fish.fish.{stage}.0.", f"{group}.{j}.trunk."),
            (f"fish.fish.{stage}.1.", f"{group}.{j}.transfer."),
        ]
    pairs += [("fish.fish.9.3.", "classifier.reduce."), ("fish.fish.9.4.1.", "classifier.fc.")]
    return tuple(pairs)


def _rename(key: str, src: int) -> str | None:
    dst = 1 - src
    for pair in prefix_pairs():
        if key.startswith(pair[src]):
            return pair[dst] + key[len(pair[src]):]
    return None


def is_released_layout(state_dict: dict[str, torch.Tensor]) -> bool:
    return any(k.split("module.", 1)[-1].startswith(RELEASED_MARKER) for k in state_dict)


def released_to_ours(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a released state dict (``module.`` prefix optional); also returns unknown keys."""
    out, unknown = {}, []
    for key, value in state_dict.items():
        new = _rename(key.removeprefix("module."), src=0)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    return out, unknown


def ours_to_released(state_dict: dict[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Rename our state dict to the released layout (with DataParallel's ``module.`` prefix)."""
    out = {}
    for key, value in state_dict.items():
        new = _rename(key, src=1)
        if new is None:
            raise KeyError(f"{key!r} has no place in the released layout")
        out[prefix + new] = value
    return out
