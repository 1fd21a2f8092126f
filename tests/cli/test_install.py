"""The commands work from any directory after a NON-editable install, without the source tree."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fishnet_train.data.decoding.jpeg_region import missing_build_prerequisites

from ..conftest import write_image_folder
from ..helpers import ROOT, TINY_TRAIN


@pytest.mark.slow
def test_wheel_install_runs_from_another_directory(image_folder, tmp_path):
    wheels, target, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)], check=True,
                   capture_output=True, timeout=300)
    wheel = next(wheels.glob("fishnet_train-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True,
                   capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONUNBUFFERED": "1"}

    def run(*args):
        return subprocess.run(list(args), cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)

    where = run(sys.executable, "-c", "import fishnet_train; print(fishnet_train.__file__)")
    assert where.stdout.strip().startswith(str(target)), where.stdout + where.stderr
    if not missing_build_prerequisites():  # the extension is built into the wheel, where the package imports it
        assert [n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("fishnet_train/data/decoding/_jpeg_region")
                and n.endswith(".so")]
        status = run(sys.executable, "-m", "fishnet_train.data.decoding.status")
        assert status.stdout == "region decoder built: training crops decode only their rectangle\n", status
    help_text = run(str(target / "bin" / "fishnet-train"), "--help")
    lines = help_text.stdout.splitlines()
    groups = dict(line.split(": ", 1) for line in lines if line.startswith(("experiment: ", "model: ")))
    assert {"demo", "fishnet150_paper", "paper"} <= set(groups["experiment"].split(", "))
    assert set(groups["model"].split(", ")) == {"fishnet99", "fishnet150", "fishnet201", "resnet50", "resnet101",
                                                "resnet152", "densenet121", "densenet161", "densenet169",
                                                "densenet201"}
    assert {"resnet50_paper", "densenet121_paper"} <= set(groups["experiment"].split(", "))
    assert run(str(target / "bin" / "fishnet-compare"), "--help").returncode == 0
    trained = run(str(target / "bin" / "fishnet-train"), *TINY_TRAIN, f"data.root={image_folder}",
                  "trainer.epochs=1", "trainer.max_steps_per_epoch=1")
    assert trained.returncode == 0, trained.stderr[-2000:]
    run_dirs = list((elsewhere / "outputs" / "train").iterdir())
    assert len(run_dirs) == 1 and (run_dirs[0] / "checkpoints" / "last.pt").exists()
    evaluated = run(str(target / "bin" / "fishnet-eval"), f"checkpoint={run_dirs[0] / 'checkpoints' / 'last.pt'}",
                    f"data.root={image_folder}", "data.workers=2")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "top1" in evaluated.stdout


def copy_source_tree(destination: Path) -> Path:
    """The project's files without build products, so a build there compiles from scratch."""
    ignore = shutil.ignore_patterns(".git", ".venv", "build", "dist", "site", "outputs", "multirun", "demo_data",
                                    "*.so", "*.egg-info", "__pycache__", ".pytest_cache")
    return Path(shutil.copytree(ROOT, destination, ignore=ignore))


@pytest.mark.slow
def test_without_a_c_compiler_the_wheel_still_builds_and_training_says_it_decodes_whole_images(tmp_path):
    """The region decoder is optional: with no compiler (CC=false) the build goes on without it, and the
    training log says once that crops decode whole images and how to get the faster path."""
    source, wheels, target = copy_source_tree(tmp_path / "src"), tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)], check=True,
                   capture_output=True, timeout=300, env={**os.environ, "CC": "false"})
    wheel = next(wheels.glob("fishnet_train-*.whl"))
    assert not [name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".so")]
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True,
                   capture_output=True, timeout=300)
    data = write_image_folder(tmp_path / "data", ext="jpg")
    trained = subprocess.run(
        [str(target / "bin" / "fishnet-train"), *TINY_TRAIN, f"data.root={data}", "trainer.epochs=1",
         "trainer.max_steps_per_epoch=2", "data.workers=2", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(target)}, capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-2000:]
    log = trained.stdout + trained.stderr
    assert log.count("region decoding is not available (") == 1, log[-3000:]
    status = subprocess.run([sys.executable, "-m", "fishnet_train.data.decoding.status"], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(target)}, capture_output=True, text=True)
    assert status.stdout.startswith("region decoding is not available (") and "python3-dev" in status.stdout
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()
