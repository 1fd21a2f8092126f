"""How the package starts processes of its own: chosen on purpose, never Python's default, which
differs by platform and version (spawn on macOS since 3.8, forkserver on Linux from 3.14)."""
from __future__ import annotations

import multiprocessing
import sys
from multiprocessing.context import BaseContext


def forking_context() -> BaseContext:
    """fork where the platform has it safely, else the platform's own default (spawn).

    Loader workers and fishnet-prepare's pool rely on fork: a forked worker shares the index arrays
    and every object frozen out of the collector with its parent page for page (``data/workers.py``),
    and starts with its parent's signal handlers, so a stop signal cannot kill it before it ignores
    such signals; spawn and forkserver start each worker as a new interpreter that imports torch again
    and copies the dataset. macOS has fork but it is unsafe there (its system frameworks abort a child
    that uses them after a fork, which is why Python's default there is spawn): spawn stays.
    """
    if sys.platform != "darwin" and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")
