"""The tracking tests' data (three epochs of eight steps) and MLflow servers."""
import pytest

from ..conftest import write_image_folder
from .mlflow_server import MlflowServer


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("tracking") / "data", train_per_class=16)


def running_server(folder):
    server = MlflowServer(folder)
    server.start()
    return server


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    """One server for a module's tests, which read back one run."""
    server = running_server(tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()


@pytest.fixture
def server(tmp_path):
    """A server of the test's own, which it may stop and start."""
    server = running_server(tmp_path / "mlflow")
    yield server
    server.stop()
