"""``fishnet-train`` whose rank 1 (or only rank) is SIGKILLed once at a chosen step, for torchrun's restart tests.

    python crash_once_train.py MARKER STEP [overrides...]

The failure comes in through the trainer's ``after_step`` seam; MARKER records that it happened.
"""
import functools
import os
import signal
import sys

import hydra

from fishnet_train.cli.common import check_and_lock
from fishnet_train.cli.jobs import run_job
from fishnet_train.training.trainer import train


def crash_once(marker: str, crash_step: int, progress) -> None:
    victim = min(1, int(os.environ.get("WORLD_SIZE", "1")) - 1)
    if progress.step == crash_step and int(os.environ.get("RANK", "0")) == victim and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    marker, step = sys.argv[1], int(sys.argv[2])
    del sys.argv[1:3]
    hook = functools.partial(crash_once, marker, step)

    @hydra.main(version_base="1.3", config_path="pkg://fishnet_train.conf", config_name="train")
    def main(cfg) -> None:
        run_job(cfg, "train.log", functools.partial(train, after_step=hook))

    lock = check_and_lock("train")  # held until the process ends
    main()
