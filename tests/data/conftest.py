"""Data shared by the data tests."""
import pytest

from fishnet_train.data.shards import write_shards

from ..conftest import write_image_folder


@pytest.fixture(scope="module")
def jpeg_data_and_shards(tmp_path_factory):
    """JPEGs large enough for reduced decodes at the 32 px crop, and their shards."""
    root = tmp_path_factory.mktemp("jpeg")
    src = write_image_folder(root / "folder", classes=3, train_per_class=8, size=96, ext="jpg")
    write_shards(str(src), str(root / "shards"), shard_mb=1, progress=lambda *a: None)
    return src, root / "shards"
