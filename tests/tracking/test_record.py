"""tracking.json: which tracked runs a restarted run goes on with."""
from fishnet_train.tracking.record import RECORD, read_record, runs_to_continue, write_record

MLFLOW = {"run_id": "m1", "logged": {"step": 300, "epoch": 200}}


def test_the_run_directory_wins_for_the_checkpoints_own_runs_its_marks_are_newer():
    checkpoint = {"mlflow": {"run_id": "m1", "logged": {"step": 100}}}
    assert runs_to_continue({"mlflow": MLFLOW}, checkpoint) == {"mlflow": MLFLOW}


def test_a_checkpoint_from_another_run_brings_its_own_tracked_runs():
    checkpoint = {"mlflow": {"run_id": "other", "logged": {"step": 100}}}
    assert runs_to_continue({"mlflow": MLFLOW}, checkpoint) == checkpoint


def test_a_run_killed_before_its_first_checkpoint_goes_on_with_the_directorys_runs():
    assert runs_to_continue({"mlflow": MLFLOW, "wandb": {"run_id": "w1"}}, {}) == {
        "mlflow": MLFLOW, "wandb": {"run_id": "w1"}}


def test_entries_without_a_run_id_are_no_runs_to_continue():
    assert runs_to_continue({"mlflow": {"run_id": None}, "wandb": "x"}, {"tensorboard": {}}) == {}


def test_the_record_is_replaced_whole_and_a_torn_one_reads_as_none(tmp_path):
    write_record(str(tmp_path), {"mlflow": MLFLOW})
    assert read_record(str(tmp_path)) == {"mlflow": MLFLOW}
    assert [p.name for p in tmp_path.iterdir()] == [RECORD]
    (tmp_path / RECORD).write_text('{"mlflow": {"run_')
    assert read_record(str(tmp_path)) == {}
    (tmp_path / RECORD).write_text('["mlflow"]')  # JSON, but no record
    assert read_record(str(tmp_path)) == {}
    assert read_record(str(tmp_path / "missing")) == {}


def marks_after_opening(tmp_path, resumed_step, from_checkpoint, rewound):
    from fishnet_train.config import TrackingConfig
    from fishnet_train.tracking import open_trackers

    trackers = open_trackers(TrackingConfig(loggers=("wandb",), wandb_mode="offline"), str(tmp_path), "run",
                             resumed_step, from_checkpoint, print, rewound=rewound)
    marks = trackers.senders["wandb"].copy_marks()
    trackers.senders["wandb"].close(0)  # never started: nothing reaches W&B
    return marks


def test_a_restart_goes_on_with_the_directorys_run_and_its_marks(tmp_path):
    write_record(str(tmp_path), {"wandb": {"run_id": "w1", "logged": {"step": 100}}})
    marks = marks_after_opening(tmp_path, 40, {}, rewound=False)
    assert (marks.run_id, marks.logged) == ("w1", {"step": 100})


def test_a_run_sent_back_to_an_earlier_checkpoint_sends_the_steps_after_it_again(tmp_path):
    write_record(str(tmp_path), {"wandb": {"run_id": "w1", "logged": {"step": 100, "epoch": 30}}})
    marks = marks_after_opening(tmp_path, 40, {}, rewound=True)
    assert (marks.run_id, marks.logged) == ("w1", {"step": 40, "epoch": 30})


def test_a_fresh_start_gets_a_new_tracked_run(tmp_path):
    write_record(str(tmp_path), {"wandb": {"run_id": "w1", "logged": {"step": 100}}})
    marks = marks_after_opening(tmp_path, 0, None, rewound=False)
    assert marks.run_id not in (None, "w1") and marks.logged == {}
