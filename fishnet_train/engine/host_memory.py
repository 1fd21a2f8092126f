"""How the C library's malloc treats the large blocks a CPU training step allocates.

glibc maps every block above its mmap threshold (at most 32 MB) afresh and unmaps it when
freed. A FishNet step at batch 16 frees and re-allocates hundreds of such activations, so
each step page-faults and zero-fills them again: on the CPU that is about a quarter of the
step. Serving them from malloc's heap and never trimming it lets each step reuse the last
one's pages; the process then keeps its peak footprint, as CUDA's caching allocator does.
"""
from __future__ import annotations

import ctypes
import functools
import platform

# mallopt() parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1  # mallopt takes an int


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and keep freed memory for reuse.

    Returns whether the setting took effect (False where the C library is not glibc;
    nothing changes then). It applies to the whole process and to the processes it forks.
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))

