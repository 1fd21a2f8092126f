"""Loader worker processes: forked whatever Python's default start method."""
import json
import subprocess
import sys

import pytest

from ..helpers import ROOT


@pytest.mark.parametrize("default", ["forkserver", "spawn"])
@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_loader_workers_are_forked_and_inherit_the_frozen_collector_whatever_the_default_start_method(default):
    result = subprocess.run([sys.executable, "-m", "tests.data.default_start_method", default], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen["start_method"] == "fork"
    # Forked workers share the objects frozen before they started (a new interpreter has none frozen).
    assert len(seen["frozen_in_workers"]) == 4 and min(seen["frozen_in_workers"]) > 0


@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_a_spawned_process_leaving_its_loader_running_exits_and_ends_the_workers():
    """multiprocessing's own exit in a process it started terminates the daemon workers (which ignore
    SIGTERM) and joins them; the workers must be killed before that, or the process hangs for ever."""
    result = subprocess.run([sys.executable, "-m", "tests.data.loader_in_spawned_process"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.stdout.split() == ["0"], result.stderr[-3000:]
