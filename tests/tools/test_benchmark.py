"""The benchmark runs end to end on tiny data in seconds (no timing is asserted)."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fishnet_train.data.shards import write_shards

from .test_tools import run_tool

BENCHMARK = "tools/benchmarks/benchmark.py"


def tiny_jpeg_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        folder = root / split / "a"
        folder.mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(folder / f"{i}.JPEG")
    return root


@pytest.mark.slow  # 16 s each: seven pipelines, each importing its libraries
@pytest.mark.parametrize("kind", ["folder", "shards", "synthetic"])
def test_data_benchmark_on_a_folder_on_shards_or_on_synthetic_jpegs(tmp_path, kind):
    folder = tiny_jpeg_folder(tmp_path / "data")
    if kind == "shards":
        write_shards(str(folder), str(tmp_path / "shards"), 1, lambda *a: None)
    root = {"folder": ["--root", str(folder)], "shards": ["--root", str(tmp_path / "shards"), "--limit", "5"],
            "synthetic": ["--synthetic", "6"]}[kind]
    out = tmp_path / "data.json"
    result = run_tool(BENCHMARK, "data", *root, "--rounds", "1", "--json", str(out))
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert set(figures) >= {"train", "train_exact_decode", "train_ta_wide_erase", "val", "decode_only"}
    assert figures["images"] == {"folder": 6, "shards": 3, "synthetic": 6}[kind]  # shards: the train samples
    assert figures["images_source"] == {"folder": f"folder: {folder}",
                                        "shards": f"shards: the first 3 train samples of {tmp_path / 'shards'}",
                                        "synthetic": "synthetic: 6 JPEGs"}[kind]
    assert ("SYNTHETIC" in result.stdout) == (kind == "synthetic")
    assert all(figures[k][side] > 0 for k in ("train", "train_ta_wide_erase", "val") for side in ("ours", "reference"))
    assert set(figures["train_pixel_difference"]) == {"reduced", "fast"}
    assert figures["train_marked_vs_whole_decode"]["ours"] > 0 and figures["val_marked_vs_as_is"]["ours"] > 0
    machine = figures["machine"]
    assert machine["cpu_capability"] and machine["fp32_matmul_gflops"] > 0 and machine["torch"]


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_a_root_that_is_no_imagenet_root_is_refused_in_one_line(tmp_path):
    result = run_tool(BENCHMARK, "data", "--root", str(tmp_path), "--json", str(tmp_path / "x.json"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: --root {tmp_path} holds no train/ or val/")


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


@pytest.fixture
def bench_inputs(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "tools" / "benchmarks"))
    import bench_inputs
    return bench_inputs


def test_synthetic_jpegs_have_imagenets_sizes_and_bytes_per_pixel(bench_inputs, tmp_path):
    rng = np.random.default_rng(1)
    sizes = [bench_inputs.imagenet_size(rng) for _ in range(4000)]
    long = np.array([max(s) for s in sizes])
    assert abs(np.mean(long == 500) - 0.70) < 0.03 and abs(np.mean([w >= h for w, h in sizes]) - 0.74) < 0.03
    assert 230 <= np.percentile(long, 5) <= 290 and 700 <= np.percentile(long, 95) <= 1000
    root = bench_inputs.write_synthetic(str(tmp_path), 30, classes=3)
    files = sorted((tmp_path / "train").rglob("*.JPEG"))
    assert len(files) == 30 and len({f.parent.name for f in files}) == 3
    pixels = sum(np.prod(Image.open(f).size) for f in files)
    assert 0.45 < sum(f.stat().st_size for f in files) / pixels < 0.65  # ImageNet's: 0.54
    assert root == str(tmp_path)


def test_shards_are_copied_out_byte_for_byte(bench_inputs, tmp_path):
    folder = tiny_jpeg_folder(tmp_path / "data")
    write_shards(str(folder), str(tmp_path / "shards"), 1, lambda *a: None)
    assert bench_inputs.is_shard_root(str(tmp_path / "shards")) and not bench_inputs.is_shard_root(str(folder))
    out = tmp_path / "out"
    assert bench_inputs.copy_out_of_shards(str(tmp_path / "shards"), str(out), 2) == 2
    copied = sorted(p.relative_to(out / "train") for p in (out / "train").rglob("*") if p.is_file())
    assert copied == [Path("a/0.JPEG"), Path("a/1.JPEG")]
    assert all((out / "train" / p).read_bytes() == (folder / "train" / p).read_bytes() for p in copied)
