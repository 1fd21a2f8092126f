"""The allocator setting is process-wide, so each check runs in a fresh interpreter."""
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc malloc setting")

CYCLES = 20
PAGES = CYCLES * 64 * 2**20 // 4096
# Minor page faults of allocating, filling and freeing a 64 MB tensor CYCLES times. (With
# kept memory the heap first grows by a few blocks: aligned requests do not fit the holes.)
_REFAULTS = """
import resource, torch
from fishnet_train.engine import host_memory
{setup}
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({cycles}):
    torch.ones(16 * 2**20).add_(1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _refaults(setup: str) -> int:
    out = subprocess.run([sys.executable, "-c", _REFAULTS.format(setup=setup, cycles=CYCLES)], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.split()[-1])


def test_kept_memory_is_reused_without_page_faults():
    assert _refaults("assert host_memory.keep_freed_memory()") < PAGES // 3
    assert _refaults("") > PAGES * 0.8  # glibc's default maps and faults every such block afresh



def test_the_trainer_keeps_freed_memory_on_the_cpu():
    setup = "from fishnet_train.engine.setup import configure_runtime; configure_runtime(0, 0, False, torch.device('cpu'))"
    assert _refaults(setup) < PAGES // 3
