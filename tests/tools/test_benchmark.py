"""The benchmark runs end to end on tiny data in seconds (no timing is asserted)."""
import json

import numpy as np
import pytest
from PIL import Image

from .test_tools import run_tool


@pytest.mark.slow  # 16 s: seven pipelines, each importing its libraries
def test_data_benchmark_on_tiny_jpegs(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        folder = tmp_path / "data" / split / "a"
        folder.mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(folder / f"{i}.JPEG")
    out = tmp_path / "data.json"
    result = run_tool("tools/benchmark.py", "data", "--root", str(tmp_path / "data"), "--rounds", "1",
                      "--json", str(out))
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert set(figures) >= {"train", "train_ta_wide_erase", "val", "decode_only"} and figures["images"] == 6
    assert all(figures[k][side] > 0 for k in ("train", "train_ta_wide_erase", "val") for side in ("ours", "reference"))


@pytest.mark.slow
def test_model_and_trainer_benchmarks_on_a_tiny_input(tmp_path):
    out = tmp_path / "model.json"
    result = run_tool("tools/benchmark.py", "all", "--root", str(tmp_path), "--model", "fishnet99", "--batch", "2",
                      "--size", "64", "--steps", "1", "--rounds", "1", "--json", str(out), "--skip-data")
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    model = figures["model"]
    assert model["train"]["ours"] > 0 and model["infer"]["eager"] > 0
    assert model["infer_max_abs_diff"] < 1e-2
    assert model["peak_mb"]["plain"] > 0 and model["peak_mb"]["grad_checkpointing"] > 0
    assert 0 < figures["trainer"]["images_per_sec"]["trainer"]
