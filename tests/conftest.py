"""Shared fixtures: tiny ImageFolder datasets written to temporary directories."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need CUDA: skipped here without one (tools/gpu_check.py runs them on a GPU)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (tools/gpu_check.py runs the gpu tests on one)")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


def write_image_folder(root: Path, classes: int = 3, train_per_class: int = 8, val_per_class: int = 3,
                       size: int = 40, seed: int = 0, ext: str = "jpg") -> Path:
    """``root/{train,val}/class_k/*.<ext>`` (jpg, as users train on, or png): each class a distinct colour
    with noise, so it is learnable."""
    rng = np.random.default_rng(seed)
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        for k in range(classes):
            folder = root / split / f"class_{k}"
            folder.mkdir(parents=True, exist_ok=True)
            base = np.zeros(3)
            base[k % 3] = 200
            for i in range(per_class):
                h, w = size + int(rng.integers(0, 9)), size + int(rng.integers(0, 9))
                pixels = np.clip(base + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"img_{i}.{ext}", **({"quality": 90} if ext == "jpg" else {}))
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "data")


@pytest.fixture
def tiny_cfg(image_folder: Path):
    """``tiny_cfg(*overrides)``: the typed options of a tiny CPU run on ``image_folder``,
    composed from the real config (tests/helpers.py: TINY_TRAIN, then the overrides)."""
    from .helpers import tiny_options

    return lambda *overrides: tiny_options(image_folder, *overrides)


@pytest.fixture(autouse=True)
def _quiet_threads(monkeypatch):
    # Two cores: keep intra-op threads from oversubscribing when tests start processes.
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))
