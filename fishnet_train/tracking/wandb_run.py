"""A Weights & Biases run: online (the API key from ``wandb login`` or ``WANDB_API_KEY``) or offline, in
``<run dir>/wandb`` for ``wandb sync``. Every process start of one training run resumes the same run id."""
from __future__ import annotations

import secrets
import string
from typing import Any

STEP_KEY = "trainer/step"  # the x axis of every metric: the run's optimizer step


def new_run_id() -> str:
    """An id in W&B's own form (8 of a-z0-9), chosen before the run starts so it is recorded first."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


class WandbRun:
    name = "wandb"
    # run.log hands points to W&B's service process, which a SIGKILL of the job also ends: what a killed
    # process logged after its checkpoint may be lost, so a resumed run logs those steps again.
    stores_on_return = False

    def __init__(self, project: str, entity: str | None, mode: str, run_dir: str, run_name: str, run_id: str,
                 adding: bool = False) -> None:
        self.project, self.entity, self.mode = project, entity, mode
        self.run_dir, self.run_name, self.run_id = run_dir, run_name, run_id
        self.adding = adding  # fishnet-eval's results for a training run: its outcome stays as it is
        self.run: Any = None

    def start(self, params: dict[str, str]) -> str:
        import wandb

        # The run's own log stays as it is. The run file is flushed every second, not every 15: a SIGKILLed job
        # (a time limit, a node failure) ends W&B's service process too, and with it what it had not written.
        flush: dict[str, Any] = {"x_transaction_log_flush_interval": 1.0}
        fields = getattr(wandb.Settings, "model_fields", {})
        settings = wandb.Settings(console="off", silent=True, **{k: v for k, v in flush.items() if k in fields})
        mode: Any = self.mode  # online | offline, checked with the config
        self.run = wandb.init(project=self.project, entity=self.entity, mode=mode, dir=self.run_dir,
                              name=self.run_name, id=self.run_id, resume="allow", settings=settings)
        # A custom x axis: W&B's own step only grows, so a resumed run's repeated steps would be dropped.
        self.run.define_metric(STEP_KEY)
        self.run.define_metric("*", step_metric=STEP_KEY)
        self.run.config.update(params, allow_val_change=True)
        return self.run_id

    def log(self, step: int, values: dict[str, float], timestamp: float) -> None:
        self.run.log({STEP_KEY: step, **values})

    def finish(self, outcome: str, summary: dict[str, str], artifact: str | None) -> None:
        import wandb

        self.run.summary.update({**({} if self.adding else {"outcome": outcome}), **summary})
        if outcome == "stopped":
            self.run.mark_preempting()  # W&B shows the run as preempted, to be resumed
        if artifact:
            model = wandb.Artifact(f"{self.run_id}-best", type="model")
            model.add_file(artifact)
            self.run.log_artifact(model)
        self.run.finish(exit_code=0 if outcome == "finished" else 1)

    def refused_for_good(self, error: Exception) -> bool:
        """No API key, a bad setting or a refused login fail the same way again; the network may come back."""
        import wandb

        return isinstance(error, (wandb.errors.UsageError, wandb.errors.AuthenticationError))
