"""fishnet-train with TensorBoard, a real MLflow server and W&B's offline mode at once, run as users run it
(loader workers, JPEGs, signals to the whole process group as SLURM sends them), interrupted three times:
one tracked run in each tracker, every step once, the outcome, and no secret in the run directory."""
import json
import os
import signal
import subprocess
import time

import pytest

from ..helpers import BIN, TINY_TRAIN, progress_at, run_cli
from .test_tensorboard import scalars
from .wandb_files import read_offline_run

pytestmark = pytest.mark.slow

SECRETS = {"MLFLOW_TRACKING_USERNAME": "ana", "MLFLOW_TRACKING_PASSWORD": "pw-0f9a7c3e",
           "WANDB_API_KEY": "k" * 32 + "0123456789"}
STEPS = 24  # 3 epochs of 8 steps


@pytest.fixture(scope="module")
def server(shared_server):
    return shared_server


def start(data, run_dir, server, *overrides):
    command = [str(BIN / "fishnet-train"), *TINY_TRAIN, "trainer.epochs=3", f"data.root={data}",
               f"hydra.run.dir={run_dir}", "tracking.loggers=[tensorboard,mlflow,wandb]",
               f"tracking.mlflow_uri={server.uri}", "tracking.wandb_mode=offline", "tracking.every_steps=1",
               "trainer.checkpoint_every_steps=2", *overrides]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, **SECRETS, "PYTHONUNBUFFERED": "1"})


def tracked_step(run_dir):
    try:
        return json.loads((run_dir / "tracking.json").read_text())["mlflow"]["logged"]["step"]
    except (OSError, ValueError, KeyError):
        return -1


def signal_after(proc, run_dir, step, signum, timeout=240):
    """Once last.pt has reached ``step`` and MLflow has a step after last.pt's (which the resumed run trains
    again), send ``signum`` to every process of the run."""
    deadline = time.time() + timeout
    while True:
        saved = progress_at(run_dir, step)
        if saved and tracked_step(run_dir) > saved["step"]:
            break
        assert proc.poll() is None and time.time() < deadline, f"exit {proc.poll()}: {proc.communicate()[1][-3000:]}"
        time.sleep(0.02)
    os.killpg(proc.pid, signum)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.fixture(scope="module")
def interrupted_run(data, server, tmp_path_factory):
    """Killed, stopped by SIGTERM (exit 75), resumed with another override and killed again, then finished."""
    run_dir = tmp_path_factory.mktemp("run") / "run"
    states = []  # MLflow's view of the run after each interruption

    def seen():
        run = server.only_run()
        states.append((run.info.status, run.data.tags.get("outcome")))

    assert signal_after(start(data, run_dir, server), run_dir, 5, signal.SIGKILL)[0] == -signal.SIGKILL
    seen()
    code, err = signal_after(start(data, run_dir, server), run_dir, 10, signal.SIGTERM)
    assert code == 75, err[-3000:]
    seen()
    changed = "trainer.log_every_steps=7"  # and, last, tracking.upload_best=true
    assert signal_after(start(data, run_dir, server, changed), run_dir, 15, signal.SIGKILL)[0] == -signal.SIGKILL
    seen()
    last = start(data, run_dir, server, changed, "tracking.upload_best=true")
    _, err = last.communicate(timeout=600)
    assert last.returncode == 0, err[-3000:]
    return run_dir, err, states


def test_mlflow_holds_one_run_with_every_step_once_and_its_outcome(interrupted_run, server):
    run_dir, _, states = interrupted_run
    # A SIGKILL cannot say so: the run stays RUNNING; the SIGTERM's stop is KILLED, to be resumed.
    assert states == [("RUNNING", None), ("KILLED", "stopped"), ("RUNNING", "stopped")]
    run = server.only_run()
    assert run.info.status == "FINISHED" and run.data.tags["outcome"] == "finished"
    assert run.data.params["model.name"] == "fishnet99" and run.data.params["run.processes"] == "1"
    assert run.data.params["trainer.log_every_steps"] == "100"  # as first logged: parameters cannot change
    assert run.data.tags["changed.trainer.log_every_steps"] == "100 -> 7"
    assert run.data.tags["checkpoint.best"] == str(run_dir / "checkpoints" / "best.pt")
    (artifact,) = server.client().list_artifacts(run.info.run_id, "checkpoints")
    assert artifact.path == "checkpoints/best.pt"
    assert artifact.file_size == (run_dir / "checkpoints" / "best.pt").stat().st_size
    for metric in ("train/loss", "train/lr", "train/images_per_sec"):
        assert [step for step, _ in server.series(run.info.run_id, metric)] == list(range(1, STEPS + 1)), metric
    assert server.series(run.info.run_id, "epoch/epoch") == [(8, 1.0), (16, 2.0), (24, 3.0)]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [value for _, value in server.series(run.info.run_id, "epoch/top1")] == pytest.approx(
        [r["top1"] for r in records])


def test_tensorboard_shows_every_step_once_with_the_values_mlflow_has(interrupted_run, server):
    run_dir, *_ = interrupted_run
    shown = scalars(run_dir, "train/loss")
    assert [step for step, _ in shown] == list(range(1, STEPS + 1))
    assert [value for _, value in shown] == pytest.approx(
        [value for _, value in server.series(server.only_run().info.run_id, "train/loss")])


def test_each_wandb_offline_folder_is_the_same_run(interrupted_run):
    run_dir, *_ = interrupted_run
    folders = sorted((run_dir / "wandb").glob("offline-run-*"))
    run_id = json.loads((run_dir / "tracking.json").read_text())["wandb"]["run_id"]
    assert len(folders) == 4 and all(folder.name.endswith(f"-{run_id}") for folder in folders)
    runs = [read_offline_run(folder) for folder in folders]
    # A SIGKILL also ends W&B's service process: what it had not yet written (up to a second) is lost.
    assert {run["run_id"] for run in runs} - {None} == {run_id}
    assert runs[1]["summary"]["outcome"] == "stopped" and runs[3]["summary"]["outcome"] == "finished"
    logged = {}
    for run in runs:  # a step logged twice has the same loss: the resume is exact
        for row in run["history"]:
            if "train/loss" in row:
                assert logged.setdefault(row["trainer/step"], row["train/loss"]) == row["train/loss"]
    stopped_at = max(row["trainer/step"] for row in runs[1]["history"])
    assert set(range(stopped_at - 2, stopped_at + 1)) <= set(logged)  # the stopped job's last steps
    assert set(range(17, STEPS + 1)) <= set(logged)  # the last job's, from its checkpoint on


def test_no_credential_reaches_the_run_directory_or_the_tracker(interrupted_run, server):
    run_dir, err, _ = interrupted_run
    for path in run_dir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for secret in (SECRETS["MLFLOW_TRACKING_PASSWORD"], SECRETS["WANDB_API_KEY"]):
                assert secret.encode() not in content, path
    assert SECRETS["MLFLOW_TRACKING_PASSWORD"] not in err
    run = server.only_run()
    recorded = [*run.data.params.values(), *run.data.tags.values()]
    assert not any(SECRETS["MLFLOW_TRACKING_PASSWORD"] in value for value in recorded)


def test_fishnet_eval_adds_its_results_to_the_training_runs_mlflow_run(interrupted_run, server, data, tmp_path):
    run_dir, *_ = interrupted_run
    result = run_cli("fishnet-eval", f"checkpoint={run_dir / 'checkpoints' / 'last.pt'}", f"data.root={data}",
                     "data.workers=2", "tracking.loggers=[mlflow]", f"tracking.mlflow_uri={server.uri}",
                     f"hydra.run.dir={tmp_path / 'eval'}")
    assert result.returncode == 0, result.stderr[-3000:]
    run = server.only_run()
    evaluated = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert server.series(run.info.run_id, "eval/data/top1") == [(STEPS, pytest.approx(evaluated["top1"]))]
    assert run.info.status == "FINISHED" and run.data.tags["outcome"] == "finished"  # the training run's, kept
    assert run.data.tags["eval.data.checkpoint"] == str(run_dir / "checkpoints" / "last.pt")
