"""A real MLflow server that goes away while fishnet-train runs: training never waits for it; what it missed
arrives when it is back, or is given up at the end with one warning. And with two processes, rank 0 alone
logs."""
import pytest

from ..helpers import run_cli
from .test_trackers_end_to_end import STEPS, start, tracked_step

pytestmark = pytest.mark.slow


def wait_until(condition, proc, timeout=240):
    import time

    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None and time.time() < deadline, f"exit {proc.poll()}: {proc.communicate()[1][-3000:]}"
        time.sleep(0.05)


def warnings_of(stdout: str) -> list[str]:
    """What the run said of MLflow (its log lines are on stdout)."""
    return [line.split("mlflow: ", 1)[1] for line in stdout.splitlines() if line.startswith("mlflow: ")]


def test_points_made_while_the_server_was_down_arrive_when_it_is_back(server, data, tmp_path):
    from ..helpers import progress_at

    run_dir = tmp_path / "run"
    proc = start(data, run_dir, server, "tracking.loggers=[mlflow]")
    wait_until(lambda: tracked_step(run_dir) >= 3, proc)
    server.stop()
    wait_until(lambda: progress_at(run_dir, 12) is not None, proc)  # training went on without it
    server.start()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    run = server.only_run()
    assert [step for step, _ in server.series(run.info.run_id, "train/loss")] == list(range(1, STEPS + 1))
    assert run.info.status == "FINISHED"
    said = warnings_of(out)
    assert len(said) == 2 and said[0].endswith("its points are kept and sent again when it answers (training goes on)")
    assert said[1] == "reachable again; the points kept meanwhile are sent"


def test_a_server_that_stays_down_costs_a_bounded_wait_a_warning_when_it_goes_and_one_at_the_end(
        server, data, tmp_path):
    run_dir = tmp_path / "run"
    proc = start(data, run_dir, server, "tracking.loggers=[mlflow]")
    wait_until(lambda: tracked_step(run_dir) >= 3, proc)
    server.stop()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    said = warnings_of(out)
    assert len(said) == 2 and "not taken by the end of the run; they are lost (training itself is complete)" in said[1]


def test_with_two_processes_rank_0_alone_logs(server, data, tmp_path):
    from .test_tensorboard import scalars

    run_dir = tmp_path / "run"
    result = run_cli("fishnet-train", *TWO_RANKS, f"data.root={data}", f"hydra.run.dir={run_dir}",
                     f"tracking.mlflow_uri={server.uri}")
    assert result.returncode == 0, result.stderr[-3000:]
    run = server.only_run()
    assert run.data.params["run.processes"] == "2"
    assert [step for step, _ in server.series(run.info.run_id, "train/loss")] == list(range(1, 9))
    assert len(list((run_dir / "tb").glob("events.out.tfevents.*"))) == 1
    assert [step for step, _ in scalars(run_dir, "train/loss")] == list(range(1, 9))


TWO_RANKS = ["experiment=demo", "data.batch_size=12", "data.workers=2", "optim.lr=0.002", "trainer.clip_grad_norm=2.0",
             "trainer.epochs=2", "trainer.devices=2", "trainer.deterministic=true",
             "tracking.loggers=[tensorboard,mlflow]", "tracking.every_steps=1"]
