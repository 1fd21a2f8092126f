"""A trained run shared by the command-line tests that only read its outputs."""
import pytest

from ..helpers import assert_ok, train_cli


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """One two-epoch FishNet-99 run on 6 tiny classes: (data root, run directory, the training's result)."""
    from ..conftest import write_image_folder

    root = tmp_path_factory.mktemp("train")
    data = write_image_folder(root / "data", classes=6)
    run_dir = root / "run"
    result = train_cli(data, run_dir)
    assert_ok(result)
    return data, run_dir, result
