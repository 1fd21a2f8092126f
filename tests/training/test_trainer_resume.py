"""A run stopped and resumed: what it reports and records about the epoch it stopped in."""
import os
import signal

import pytest

from fishnet_train.processes.signals import Preempted
from fishnet_train.training.trainer import train

from ..helpers import metrics


@pytest.mark.slow  # over 6 s on 2 cores
def test_an_epoch_stopped_after_its_last_step_and_resumed_reports_all_of_it_once(tiny_cfg, tmp_path):
    reference = train(tiny_cfg("trainer.epochs=1"), str(tmp_path / "reference"))
    run_dir = tmp_path / "run"

    def signal_at_step_3(progress):  # seen at the next step's agreement: the run stops after step 4 of 4
        if progress.step == 3:
            os.kill(os.getpid(), signal.SIGUSR2)

    with pytest.raises(Preempted, match="epoch 1, step 4"):
        train(tiny_cfg("trainer.epochs=1"), str(run_dir), after_step=signal_at_step_3)
    # As if a run had written epoch 1's line and died before its checkpoint: the resume drops it.
    (run_dir / "metrics.jsonl").write_text('{"epoch": 1, "step": 4, "train_loss": 123.0}\n')
    record = train(tiny_cfg("trainer.epochs=1"), str(run_dir))
    assert record["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-6)  # not 0.0: no step ran now
    assert record["images_per_sec"] > 0
    assert metrics(run_dir) == [record]
