"""The benchmark runs end to end on tiny data in seconds (no timing is asserted)."""
import json

import numpy as np
import pytest
from PIL import Image

from .test_tools import run_tool

BENCHMARK = "tools/benchmarks/benchmark.py"


@pytest.mark.slow  # 16 s: seven pipelines, each importing its libraries
def test_data_benchmark_on_tiny_jpegs(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        folder = tmp_path / "data" / split / "a"
        folder.mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(folder / f"{i}.JPEG")
    out = tmp_path / "data.json"
    result = run_tool(BENCHMARK, "data", "--root", str(tmp_path / "data"), "--rounds", "1",
                      "--json", str(out))
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert set(figures) >= {"train", "train_exact_decode", "train_ta_wide_erase", "val", "decode_only"}
    assert figures["images"] == 6
    assert all(figures[k][side] > 0 for k in ("train", "train_ta_wide_erase", "val") for side in ("ours", "reference"))
    assert set(figures["train_pixel_difference"]) == {"reduced", "fast"}
    assert figures["train_marked_vs_whole_decode"]["ours"] > 0 and figures["val_marked_vs_as_is"]["ours"] > 0
    machine = figures["machine"]
    assert machine["cpu_capability"] and machine["fp32_matmul_gflops"] > 0 and machine["torch"]


@pytest.mark.slow  # 10 s
def test_index_benchmark_reports_each_workers_memory_for_both_layouts(tmp_path):
    out = tmp_path / "index.json"
    result = run_tool(BENCHMARK, "index", "--samples", "3000", "--workers", "2", "--json", str(out))
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert figures["samples"] == 3000 and figures["parent_mb"] > 0
    for layout in (figures, figures["list_of_tuples"], figures["flat_collector_not_frozen"], figures["no_index"]):
        assert len(layout["worker_private_mb"]["start"]) == len(layout["worker_private_mb"]["end"]) == 2


@pytest.mark.slow  # 8 s
def test_decoder_benchmark_times_the_installed_decoders(tmp_path):
    folder = tmp_path / "data" / "val" / "a"
    folder.mkdir(parents=True)
    Image.new("RGB", (900, 700), (10, 200, 30)).save(folder / "big.JPEG")
    out = tmp_path / "decoders.json"
    result = run_tool(BENCHMARK, "decoders", "--root", str(tmp_path / "data"), "--rounds", "1",
                      "--json", str(out))
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert figures["simplejpeg"] > 0 and figures["pillow"] > 0 and figures["images"] == 1


@pytest.mark.slow
def test_model_and_trainer_benchmarks_on_a_tiny_input(tmp_path):
    out = tmp_path / "model.json"
    result = run_tool(BENCHMARK, "all", "--root", str(tmp_path), "--model", "fishnet99", "--batch", "2",
                      "--size", "64", "--steps", "1", "--rounds", "1", "--json", str(out), "--skip-data")
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    model = figures["model"]
    assert model["train"]["ours"] > 0 and model["infer"]["eager"] > 0
    assert model["infer_max_abs_diff"] < 1e-2
    assert model["peak_mb"]["plain"] > 0 and model["peak_mb"]["grad_checkpointing"] > 0
    assert 0 < figures["trainer"]["images_per_sec"]["trainer"]


@pytest.mark.slow  # about 40 s: it starts an MLflow server
def test_tracking_benchmark_measures_every_tracker_against_none(tmp_path):
    out = tmp_path / "tracking.json"
    result = run_tool(BENCHMARK, "tracking", "--model", "fishnet99", "--batch", "2", "--size", "32",
                      "--steps", "3", "--rounds", "1", "--every", "50", "--json", str(out))
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert figures["loggers"] == ["tensorboard", "mlflow", "wandb"]
    assert figures["per_call_ms"] > 0 and figures["every"] == 50
    assert figures["images_per_sec"]["none"] > 0 and figures["images_per_sec"]["every_step"] > 0
    step_ms = 1e3 * 2 / figures["images_per_sec"]["none"]
    assert figures["overhead_at_default"] == pytest.approx(figures["per_call_ms"] / (50 * step_ms))
