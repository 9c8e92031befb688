"""Give the C heap's free pages back to the kernel (glibc's `malloc_trim`).

What start-up and a config apply build and drop — the checked config read back from the child
that checked it, the YAML, the rule packs' compilation, the replaced safety core — is freed
inside the C heap, in holes among live blocks, and glibc returns to the kernel only what is free
at the heap's top: the rest stays in the resident set for the life of the process. A trim
`TRIM_AFTER_START` seconds after the gateway starts (its rings and windows reserved by then) and
after each apply's collection gives those pages back: −5 MiB on a 1-point site here, nothing at
2,000 points (whose data fill the holes); docs/performance.md has the figures. A C library
without `malloc_trim` (musl) makes this a no-op."""

from __future__ import annotations

import ctypes
import logging
import time

log = logging.getLogger("roomwarden.daemon")

TRIM_AFTER_START = 30.0
"""Seconds after start before the one start-up trim."""


def trim() -> float:
    """Return the free pages of the C heap to the kernel; milliseconds taken (0 if the C library
    cannot)."""
    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return 0.0
    began = time.perf_counter()
    malloc_trim(0)
    return (time.perf_counter() - began) * 1000
