import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # several seconds: make test keeps to its 5 minutes
def test_model_info_prints_parameters_macs_and_stage_shapes():
    result = run_tool("tools/model_info.py", "fishnet99", "--size", "225", "300")
    assert result.returncode == 0, result.stderr
    assert "16,628,904 parameters" in result.stdout
    assert re.search(r"head\.2 +\(1, 2112, 7, 9\)", result.stdout)


@pytest.mark.slow  # ten models counted
def test_model_info_without_a_model_prints_the_table_of_all_ten():
    result = run_tool("tools/model_info.py")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 10
    assert "| densenet121 | 7,978,856 | 2.834 | 74.43 | 91.97 |" in rows
    assert "| resnet50 | 25,557,032 | 4.089 | 76.13 | 92.86 |" in rows


@pytest.mark.slow  # two tool processes
def test_make_shards_packs_a_folder_and_refuses_a_wrong_root_in_one_line(tmp_path):
    from fishnet_train.data import read_shard_splits

    from ..conftest import write_image_folder
    src = write_image_folder(tmp_path / "src", classes=2, train_per_class=3)
    result = run_tool("tools/make_shards.py", str(src), str(tmp_path / "dst"), "--shard-mb", "1")
    assert result.returncode == 0, result.stderr
    train, val = read_shard_splits(str(tmp_path / "dst"))
    assert len(train) == 6 and len(val) == 6
    result = run_tool("tools/make_shards.py", str(tmp_path / "nowhere"), str(tmp_path / "dst2"))
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0 and "is not a directory" in result.stderr


@pytest.mark.slow  # a tool process
def test_make_index_writes_the_cache_training_reads(tmp_path):
    from fishnet_train.data import folders

    from ..conftest import write_image_folder
    src = write_image_folder(tmp_path / "src", classes=2, train_per_class=3)
    result = run_tool("tools/make_index.py", str(src), str(tmp_path / "index.npz"))
    assert result.returncode == 0, result.stderr
    assert "6 train and 6 val samples, 2 classes" in result.stdout
    assert folders.read_index_cache(str(tmp_path / "index.npz"), folders.folder_fingerprint(str(src)), str(src))


def test_mutate_maps_each_module_to_its_own_existing_test_files():
    result = run_tool("tools/mutate.py", "--list")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert {row[0] for row in rows} >= {"training/checkpoint", "training/loop", "data/samplers", "apps/evaluator",
                                        "apps/predictor", "models/hub"}
    for module, source, *tests in rows:
        assert (ROOT / source).is_file() and tests, module
        assert all((ROOT / t).is_file() and t.startswith("tests/") for t in tests), module
    result = run_tool("tools/mutate.py", "data/nothing")
    assert result.returncode == 2 and "unknown module(s) data/nothing" in result.stderr
