"""An MLflow run through MLflow's client: a server of the team's (``tracking.mlflow_uri`` or
``MLFLOW_TRACKING_URI``, credentials from the environment) or a local store."""
from __future__ import annotations

import os
from typing import Any

MAX_PER_BATCH = 100  # MLflow's log_batch takes at most 100 params or tags and 1000 metrics per call
MAX_PARAM_LENGTH = 6000
STATUS = {"finished": "FINISHED", "failed": "FAILED"}  # stopped (exit 75) and interrupted: KILLED
# Unless the environment says otherwise: the Sender tries a failed call again without holding up the run's
# end, so no minutes of retries inside one call; and no URL printed when a run ends (one from the
# environment may hold a password).
CLIENT_ENVIRONMENT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
                      "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


class MlflowRun:
    name = "mlflow"
    stores_on_return = True  # log_batch returns once the server has stored the points

    def __init__(self, uri: str | None, experiment: str, run_name: str, run_id: str | None,
                 adding: bool = False) -> None:
        self.uri, self.experiment, self.run_name, self.run_id = uri, experiment, run_name, run_id
        self.adding = adding  # fishnet-eval's results for a training run: its status and outcome stay as they are
        self.client: Any = None
        for key, value in CLIENT_ENVIRONMENT.items():  # here, before the sending thread starts
            os.environ.setdefault(key, value)

    def start(self, params: dict[str, str]) -> str:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri)
        if self.run_id is not None and not self._usable(self.run_id):
            self.run_id = None  # deleted, or not on this server: the training goes on in a new tracked run
        if self.run_id is None:
            found = self.client.get_experiment_by_name(self.experiment)
            experiment_id = found.experiment_id if found else self.client.create_experiment(self.experiment)
            self.run_id = self.client.create_run(experiment_id, run_name=self.run_name).info.run_id
        elif not self.adding:
            self.client.update_run(self.run_id, status="RUNNING")
        self._log_params(params)
        return self.run_id

    def _usable(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id).info.lifecycle_stage == "active"
        except MlflowException as e:
            if e.get_http_status_code() == 404:
                return False
            raise

    def _log_params(self, params: dict[str, str]) -> None:
        """Parameters cannot change once logged: a resume with another value (a new time limit, another
        number of processes) records it as a tag instead."""
        from mlflow.entities import Param, RunTag

        logged = self.client.get_run(self.run_id).data.params
        values = {k: v[:MAX_PARAM_LENGTH] for k, v in params.items()}
        new = [Param(k, v) for k, v in values.items() if k not in logged]
        changed = [RunTag(f"changed.{k}", f"{logged[k]} -> {v}") for k, v in values.items() if k in logged
                   and logged[k] != v]
        for i in range(0, max(len(new), len(changed)), MAX_PER_BATCH):
            self.client.log_batch(self.run_id, params=new[i:i + MAX_PER_BATCH], tags=changed[i:i + MAX_PER_BATCH])

    def log(self, step: int, values: dict[str, float], timestamp: float) -> None:
        from mlflow.entities import Metric

        millis = int(timestamp * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), millis, step) for k, v in values.items()])

    def finish(self, outcome: str, summary: dict[str, str], artifact: str | None) -> None:
        """The outcome and status first: an upload cut short by the end of the run leaves them right."""
        from mlflow.entities import RunTag

        tags = ([] if self.adding else [RunTag("outcome", outcome)]) + [RunTag(k, v) for k, v in summary.items()]
        self.client.log_batch(self.run_id, tags=tags)
        if not self.adding:
            self.client.set_terminated(self.run_id, STATUS.get(outcome, "KILLED"))
        if artifact:
            self.client.log_artifact(self.run_id, artifact, "checkpoints")

    def refused_for_good(self, error: Exception) -> bool:
        """A request the server answers with a client error (bad address scheme, no permission, a bad
        value) fails the same way again; a server that is down, or fails itself, may answer later."""
        from mlflow.exceptions import MlflowException

        if not isinstance(error, MlflowException):
            return False
        status = error.get_http_status_code()
        return 400 <= status < 500 and status not in (408, 429)
