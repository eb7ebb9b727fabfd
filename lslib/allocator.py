"""The C allocator's settings that decide whether freed CPU memory stays in the process.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc hands a freed block back to the
kernel when it was mapped on its own (blocks above a threshold that adapts up to 32 MiB) or when
the free space at the top of the heap exceeds a trim threshold, and the next pass over the same
sizes then faults fresh zeroed pages in, one 4 KiB page at a time. For the attacks and training
steps of this project, which allocate the same few MB buffers thousands of times, that costs a
few to tens of per cent of the CPU time (``python bench/bench_attacks.py`` prints the page faults
of its runs).

:func:`keep_freed_memory` fixes the thresholds so that freed memory below 32 MiB stays in the
process and is reused. It is process-wide and the resident memory then stays at its high-water
mark, so lslib never calls it on import: the command line (``python -m lslib``) calls it for its
own process, and the benchmarks call it in every process they time, for every library alike.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

__all__ = ["keep_freed_memory"]

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 2**20  # glibc's largest (HEAP_MAX_SIZE / 2 on 64-bit machines)
TRIM_THRESHOLD = 2**30
TOP_PAD = 64 * 2**20


def keep_freed_memory() -> bool:
    """Keep freed blocks of up to 32 MiB in the process (glibc only; a no-op elsewhere).

    Sets glibc's ``M_MMAP_THRESHOLD`` to 32 MiB (blocks below it come from the heap, which also
    stops the threshold from adapting), ``M_TRIM_THRESHOLD`` to 1 GiB (the top of the heap is
    not handed back below that) and ``M_TOP_PAD`` to 64 MiB (the heap grows in larger steps).
    Returns True when all three took effect, False on a C library without ``mallopt``.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (_M_TOP_PAD, TOP_PAD)))
