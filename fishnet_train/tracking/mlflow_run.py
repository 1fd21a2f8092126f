"""An MLflow run through MLflow's client: a server of the team's (``tracking.mlflow_uri`` or
``MLFLOW_TRACKING_URI``, credentials from the environment) or a local store."""
from __future__ import annotations

import os
from typing import Any

MAX_PER_BATCH = 100  # MLflow's log_batch takes at most 100 params or tags and 1000 metrics per call
MAX_PARAM_LENGTH = 6000
STATUS = {"finished": "FINISHED", "failed": "FAILED"}  # stopped (exit 75) and interrupted: KILLED


class MlflowRun:
    name = "mlflow"
    stores_on_return = True  # log_batch returns once the server has stored the points

    def __init__(self, uri: str | None, experiment: str, run_name: str, run_id: str | None,
                 adding: bool = False) -> None:
        self.uri, self.experiment, self.run_name, self.run_id = uri, experiment, run_name, run_id
        self.adding = adding  # fishnet-eval's results for a training run: its status and outcome stay as they are
        self.client: Any = None

    def start(self, params: dict[str, str]) -> str:
        # MLflow prints each run's URL when it ends; a URI from the environment may hold a password.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        # The Sender tries a failed call again, without holding up the run's end: no minutes of retries inside.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        from mlflow.entities import Param, RunTag
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri)
        if self.run_id is None:
            found = self.client.get_experiment_by_name(self.experiment)
            experiment_id = found.experiment_id if found else self.client.create_experiment(self.experiment)
            self.run_id = self.client.create_run(experiment_id, run_name=self.run_name).info.run_id
        elif not self.adding:
            self.client.update_run(self.run_id, status="RUNNING")
        # Parameters cannot change once logged: a resume with another value (a new time limit, another
        # number of processes) records it as a tag instead.
        logged = self.client.get_run(self.run_id).data.params
        values = {k: v[:MAX_PARAM_LENGTH] for k, v in params.items()}
        new = [Param(k, v) for k, v in values.items() if k not in logged]
        changed = [RunTag(f"changed.{k}", f"{logged[k]} -> {v}") for k, v in values.items() if k in logged
                   and logged[k] != v]
        for i in range(0, max(len(new), len(changed)), MAX_PER_BATCH):
            self.client.log_batch(self.run_id, params=new[i:i + MAX_PER_BATCH], tags=changed[i:i + MAX_PER_BATCH])
        return self.run_id

    def log(self, step: int, values: dict[str, float], timestamp: float) -> None:
        from mlflow.entities import Metric

        millis = int(timestamp * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), millis, step) for k, v in values.items()])

    def finish(self, outcome: str, summary: dict[str, str], artifact: str | None) -> None:
        from mlflow.entities import RunTag

        tags = ([] if self.adding else [RunTag("outcome", outcome)]) + [RunTag(k, v) for k, v in summary.items()]
        self.client.log_batch(self.run_id, tags=tags)
        if artifact:
            self.client.log_artifact(self.run_id, artifact, "checkpoints")
        if not self.adding:
            self.client.set_terminated(self.run_id, STATUS.get(outcome, "KILLED"))
