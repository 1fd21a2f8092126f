"""The tracking options are checked with the rest of the config, before anything starts: one line each."""
import sys

import pytest

from fishnet_train.config import TrackingConfig
from fishnet_train.errors import UserError
from fishnet_train.tracking import check_tracking

from ..helpers import assert_user_error, run_cli


@pytest.mark.parametrize("options, fragment", [
    (TrackingConfig(loggers=("tensorboard", "comet")), "tracking.loggers: 'comet' is not one of tensorboard, mlflow"),
    (TrackingConfig(loggers=("mlflow", "mlflow")), "names a logger twice"),
    (TrackingConfig(every_steps=0), "tracking.every_steps must be a positive number of steps, got 0"),
    (TrackingConfig(wandb_mode="disabled"), "tracking.wandb_mode='disabled' is not one of online, offline"),
    (TrackingConfig(mlflow_experiment=" "), "tracking.mlflow_experiment must not be empty"),
    (TrackingConfig(wandb_project=""), "tracking.wandb_project must not be empty"),
    (TrackingConfig(mlflow_uri="https://ana:s3cret@mlflow.example.org"),
     "tracking.mlflow_uri holds a password, which would be written into the run directory: set "
     "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or the whole MLFLOW_TRACKING_URI) in the environment "
     "instead"),
])
def test_a_tracking_option_no_run_can_use_is_refused(options, fragment):
    with pytest.raises(UserError, match=None) as raised:
        check_tracking(options)
    assert fragment in str(raised.value)


@pytest.mark.parametrize("options", [
    TrackingConfig(), TrackingConfig(loggers=()), TrackingConfig(loggers=("tensorboard", "mlflow", "wandb")),
    TrackingConfig(every_steps=1, wandb_mode="offline", mlflow_uri="http://mlflow.example.org:5000"),
    TrackingConfig(mlflow_uri="https://ana@mlflow.example.org"),  # a user name alone is no secret
    TrackingConfig(mlflow_uri="http://[::1"),  # malformed: MLflow's own error says so, with no password to hide
])
def test_the_documented_choices_pass(options):
    check_tracking(options)


@pytest.mark.parametrize("name", ["mlflow", "wandb"])
def test_a_tracker_that_is_not_installed_is_named_with_its_extra(name, monkeypatch):
    monkeypatch.setitem(sys.modules, name, None)  # find_spec answers None: as if not installed
    with pytest.raises(UserError) as raised:
        check_tracking(TrackingConfig(loggers=("tensorboard", name)))
    assert str(raised.value) == (f"tracking.loggers includes {name}, which is not installed: pip install {name} (the "
                                 f"project's [{name}] extra), or leave {name} out of tracking.loggers")


def test_the_command_line_refuses_a_password_in_the_uri_before_any_work(tmp_path):
    for command, args in (("fishnet-train", [f"data.root={tmp_path}"]),
                          ("fishnet-eval", [f"checkpoint={tmp_path}/c.pt", f"data.root={tmp_path}"])):
        result = run_cli(command, *args, "tracking.loggers=[mlflow]", "tracking.mlflow_uri=http://u:pw@127.0.0.1:9",
                         f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
        assert_user_error(result, "tracking.mlflow_uri holds a password")
        assert not (tmp_path / "run").exists()
