"""``fishnet-prepare`` reading each sample slowly (SLOW_READ_S seconds), so that a test can kill it mid-run.

    python -m tests.apps.slow_prepare SRC DST [options...]
"""
import os
import time

from fishnet_train.apps.prepare import sources
from fishnet_train.cli.prepare import main

_read = sources.SampleReader.read


def slow_read(self, *args):
    time.sleep(float(os.environ.get("SLOW_READ_S", "0.03")))
    return _read(self, *args)


if __name__ == "__main__":
    sources.SampleReader.read = slow_read
    main()
