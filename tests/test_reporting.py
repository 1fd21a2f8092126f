"""What rank 0 shows and writes: bars on terminals, plain lines in log files, one metrics line per epoch."""
import json

from fishnet_train.reporting import ProgressLines, Reporter
from fishnet_train.training.checkpoint import Progress
from fishnet_train.training.loop import train_one_epoch

from .training.test_loop import batches, loop, parts


def test_where_stderr_is_a_file_progress_is_a_plain_line_every_n_steps(tmp_path, caplog):
    reporter = Reporter(str(tmp_path), active=True, line_every=(2, 3600.0), terminal=False)
    with caplog.at_level("INFO"):
        train_one_epoch(parts(steps=5), batches(n=5), Progress(), loop(steps_per_epoch=5), reporter=reporter)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch 1/1  ")]
    assert [line.split("  ")[1] for line in lines] == ["2/5", "4/5", "5/5"]  # every 2 steps, and the last
    for line in lines:
        assert "\r" not in line
        for field in ("step ", "loss ", "lr ", "img_s ", "data_wait "):
            assert field in line, line
    assert "step 4" in lines[1]  # the values of the step the line is printed at


def test_a_line_is_also_due_after_the_interval_in_seconds(caplog):
    with caplog.at_level("INFO"):
        assert list(ProgressLines(range(5), 5, "val", every_steps=1000, every_seconds=0.0)) == list(range(5))
    assert [r.getMessage() for r in caplog.records] == [f"val  {i}/5" for i in range(1, 6)]


def test_a_terminal_gets_a_bar(tmp_path):
    bar = Reporter(str(tmp_path), active=True, terminal=True).bar(range(3), 3, "epoch 1/1")
    assert hasattr(bar, "set_postfix") and not isinstance(bar, ProgressLines)


def test_a_resume_drops_the_metrics_lines_of_epochs_after_its_checkpoint(tmp_path):
    reporter = Reporter(str(tmp_path), active=True)
    for epoch in (1, 2, 3):
        reporter.epoch_metrics({"epoch": epoch, "step": epoch * 10, "train_loss": 1.0})
    reporter.keep_epochs(2)  # the checkpoint is epoch 2's end: epoch 3 is trained, and written, again
    assert [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert not list(tmp_path.glob("*.tmp"))


def test_other_ranks_leave_the_metrics_alone(tmp_path):
    Reporter(str(tmp_path), active=True).epoch_metrics({"epoch": 1, "step": 1})
    Reporter(str(tmp_path), active=False).keep_epochs(0)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def test_rank_0_makes_the_run_directory_that_train_is_given(tmp_path):
    Reporter(str(tmp_path / "other"), active=False)
    Reporter(str(tmp_path / "runs" / "a"), active=True).write_text("config.yaml", "x")
    assert (tmp_path / "runs" / "a" / "config.yaml").read_text() == "x" and not (tmp_path / "other").exists()
