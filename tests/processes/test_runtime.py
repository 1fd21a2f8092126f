"""Process-wide settings. The allocator's is process-wide, so each check runs in a fresh interpreter."""
import platform
import subprocess
import sys

import pytest
import torch

from fishnet_train.processes.runtime import RuntimeSettings, configure_process

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc malloc setting")

CYCLES = 20
PAGES = CYCLES * 64 * 2**20 // 4096
# Minor page faults of allocating, filling and freeing a 64 MB tensor CYCLES times. (With
# kept memory the heap first grows by a few blocks: aligned requests do not fit the holes.)
_REFAULTS = """
import resource, torch
from fishnet_train.processes.runtime import RuntimeSettings, configure_process, keep_freed_memory
{setup}
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({cycles}):
    torch.ones(16 * 2**20).add_(1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _refaults(setup: str) -> int:
    out = subprocess.run([sys.executable, "-c", _REFAULTS.format(setup=setup, cycles=CYCLES)], capture_output=True,
                         text=True, check=True)
    return int(out.stdout.split()[-1])


@glibc_only
@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_kept_memory_is_reused_without_page_faults():
    assert _refaults("assert keep_freed_memory()") < PAGES // 3
    assert _refaults("") > PAGES * 0.8  # glibc's default maps and faults every such block afresh


@glibc_only
@pytest.mark.parametrize("allocator, kept", [("keep_freed", True), ("system", False)])
@pytest.mark.slow  # over 2.5 s on 2 cores: make test-slow
def test_the_host_allocator_option_decides_the_cpu_setting(allocator, kept):
    setup = f"print(configure_process(RuntimeSettings(0, 0, torch.device('cpu'), {allocator!r})))"
    refaults = _refaults(setup)
    assert (refaults < PAGES // 3) if kept else (refaults > PAGES * 0.8)


def test_settings_are_applied_and_described_in_one_line():
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        line = configure_process(RuntimeSettings(seed=5, rank=1, device=torch.device("cpu"), deterministic=True,
                                                 host_allocator="system"))
        assert torch.are_deterministic_algorithms_enabled()
        first = torch.rand(3)
        configure_process(RuntimeSettings(seed=5, rank=1, device=torch.device("cpu"), host_allocator="system"))
        assert not torch.are_deterministic_algorithms_enabled()
        assert torch.equal(torch.rand(3), first)  # seeded with seed + rank
        configure_process(RuntimeSettings(seed=5, rank=0, device=torch.device("cpu"), host_allocator="system"))
        assert not torch.equal(torch.rand(3), first)
    finally:
        torch.use_deterministic_algorithms(deterministic)
    assert line.startswith("runtime: seed 5+rank, deterministic true") and "host allocator system" in line


@pytest.mark.parametrize("overrides, expected", [
    ((), (0, 3, "keep_freed", False)),
    (("trainer.seed=7", "trainer.deterministic=true", "trainer.host_allocator=system"), (7, 3, "system", True)),
])
def test_the_settings_of_a_process_come_from_its_trainer_options(overrides, expected):
    from fishnet_train.config import to_options
    from fishnet_train.processes.runtime import settings_for

    from ..helpers import compose_train

    trainer = to_options(compose_train("data.root=/d", *overrides)).trainer
    s = settings_for(trainer, 3, torch.device("cpu"))
    assert (s.seed, s.rank, s.host_allocator, s.deterministic) == expected
