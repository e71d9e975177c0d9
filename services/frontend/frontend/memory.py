"""Give the memory of big, short-lived buffers back to the system as soon as they are freed.

A worker's threads decode images and read bodies of several MB each. glibc serves a request that large with
its own mmap() and returns it on free(), but after the first such free it raises that threshold to the size
freed (up to 32 MiB), and from then on serves such buffers from per-thread heaps that it keeps. A worker's
resident memory then grows to the sum of what each of its threads ever held at once, whatever the budgets in
frontend.preprocess allow at a time (measured: eight threads decoding under a 64 MiB budget grew the process
by 157 MiB; with the threshold fixed, by 43 MiB). Fixing the threshold keeps every buffer of 1 MiB or more
on its own mapping, returned when freed.
"""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # glibc's mallopt() parameter (malloc.h)
MMAP_THRESHOLD_BYTES = 1024 * 1024


def return_big_buffers_to_the_system() -> bool:
    """Fix glibc's mmap threshold (inherited by forked workers); False where the C library is not glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl, macOS: no mallopt, nothing to tune
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
