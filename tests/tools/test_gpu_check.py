"""The GPU check runs end to end on the CPU at tiny sizes, so it is known to work before a GPU runs it."""
import importlib.util
import json
import sys

import pytest

from ..helpers import ROOT
from .test_tools import run_tool


@pytest.mark.slow  # about 20 s: the gpu tests' collection, four model steps, loader workers
def test_the_cpu_smoke_run_writes_every_section(tmp_path):
    result = run_tool("tools/gpu_check.py", str(tmp_path / "out"), "--cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert figures["environment"]["device"] == "cpu" and figures["environment"]["torch"]
    tests = figures["gpu_tests"]  # every gpu test was collected and, without CUDA, skipped
    assert tests["ok"] and tests["tests"] >= 8 and tests["skipped"] == tests["tests"] and tests["failures"] == 0
    step = figures["steps"]["2"]
    assert set(step) == {"train_plain", "train_ours", "infer_plain", "infer_ours"}
    assert all(v["images_per_sec"] > 0 for v in step.values())
    assert figures["loader"]["images_per_sec"] > 0 and figures["loader"]["jpeg_kb"] > 10
    assert figures["host_sync"]["with_agreement"] > 0 and figures["host_sync"]["without"] > 0
    assert figures["compiled"] == {"skipped": "not on the CPU smoke run"}
    table = (tmp_path / "out" / "gpu_check.md").read_text()
    assert "| 2 | train |" in table and "| 2 | infer |" in table and "gpu tests: 0 passed, 0 failed" in table
    assert (tmp_path / "out" / "gpu_tests.xml").exists()


def _gpu_check():
    sys.path.insert(0, str(ROOT / "tools" / "benchmarks"))
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "tools" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def test_the_table_gives_each_ratio_against_the_plain_step():
    gpu_check = _gpu_check()
    step = {"images_per_sec": 100.0, "step_peak_mb": 10.0}
    results = {
        "environment": {"device": "NVIDIA H200", "driver": "580", "torch": "2.11", "cuda": "13.0", "cudnn": 1,
                        "cpu_cores": 16},
        "sizes": {"model": "fishnet150", "size": 224, "batches": [128]},
        "gpu_tests": {"tests": 9, "failures": 1, "errors": 0, "skipped": 2, "seconds": 60.0, "ok": False,
                      "timed_out": False},
        "steps": {"128": {"train_plain": step, "infer_plain": step, "train_ours": {**step, "images_per_sec": 300.0},
                          "infer_ours": {**step, "images_per_sec": 250.0}}},
        "compiled": {"batch": 128, "images_per_sec": 400.0, "step_peak_mb": 5.0, "compile_seconds": 90.0},
        "loader": {"workers": 14, "batch": 64, "jpeg_kb": 110.0, "images_per_sec": 200.0},
        "host_sync": {"with_agreement": 9.0, "without": 10.0, "batch": 32},
    }
    table = gpu_check.markdown(results)
    assert "gpu tests: 6 passed, 1 failed, 2 skipped (60.0 s), NOT OK" in table
    assert "| 128 | train | 100.0 | 300.0 | 3.00x |" in table and "| 128 | infer | 100.0 | 250.0 | 2.50x |" in table
    assert "| 128 | train, compiled | 100.0 | 400.0 | 4.00x |" in table
    assert "0.50x the fastest training step at batch 128 (400.0 img/s)" in table
    results["compiled"] = {"skipped": "less than 200 s of the 480 s budget left"}
    table = gpu_check.markdown(results)
    assert "compiled" not in table.split("compiled step: skipped")[0] and "0.67x the fastest" in table
