"""A run interrupted by Ctrl-C stops, even where Python dropped the interrupt."""
import pytest

from fishnet_train.training.trainer import train

from ..helpers import drop_a_ctrl_c


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_a_ctrl_c_dropped_at_the_last_step_stops_the_validation_that_follows(tiny_cfg, tmp_path):
    def ctrl_c_at_the_last_step(progress):
        if progress.step == 4:  # of 4: validation is all that is left of the run
            drop_a_ctrl_c()

    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg("trainer.epochs=1"), str(tmp_path / "run"), after_step=ctrl_c_at_the_last_step)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # the epoch never finished validating
