"""Keeping the C heap (glibc's) compact in a long-running gateway.

`trim` gives the heap's free pages back to the kernel (glibc's `malloc_trim`), after a config
apply's full collection (gateway.reconfigure). What an apply builds and drops — the checked
config read back from the child that checked it, the rule packs' compilation, the replaced
safety core, bus loops and tasks — is freed inside the C heap, in holes among live blocks, and
glibc returns to the kernel only what is free at the heap's top: the rest stays in the resident
set. Measured on the telecom site in one process with its simulator, six applies: RSS 68.2 ->
71.9 MiB with the trim, -> 72.6 without. A trim at start-up was tried and left out: a process
started as the unit starts it has no free holes to give back (bench_process at 1 and 200
points: no change; a process with extra start-up imports, 5 MiB). A C library without
`malloc_trim` (musl) makes this a no-op.

`map_large_blocks` and `socket_read_size` (both set by gateway.supervisor for `roomwarden
run`) keep large short-lived blocks from growing the heap. glibc serves a block below its mmap
threshold from the heap, and raises that threshold to the largest mapped block freed (1 MiB
in a running gateway, after start-up's work); a block of tens or hundreds of KiB made and
freed again and again then needs a free run that long among the heap's live blocks, there
rarely is one, and the heap grows at its top and keeps the pages. At 2,000 points a second
that grew a gateway's heap by 0.8 MiB in its first 11 minutes, and on for tens of minutes
(docs/performance.md, "Flat after warm-up: the C heap"): asyncio's 256 KiB read buffer (every
read of a Modbus TCP reply of a few hundred bytes, 20 a second, allocates one and shrinks it
to what arrived) and the telemetry messages' blocks (58-64 KB, about 10 a second: the
encoder's, SQLite's, the MQTT packet's).

glibc also reads both settings from the environment at start (`MALLOC_MMAP_THRESHOLD_`,
`MALLOC_TRIM_THRESHOLD_`: the same thresholds, fixed as `mallopt` fixes them), and
systemd/roomwarden.service sets them: `map_large_blocks` then has nothing to do and `ctypes`
(0.35 MiB with its library and libffi, issue 15) is not imported until a trim needs it. A
gateway started by hand without them still gets them through `mallopt`."""

from __future__ import annotations

import os
import time
from asyncio import selector_events

MAPPED_FROM = 40 * 1024
"""Blocks of this many bytes or more get a memory mapping of their own rather than grow the
heap (`map_large_blocks`): above the 32 KiB output buffer Python's zlib takes at every
flight-recorder seal (15 a second at 2,000 points), below the telemetry messages and their
copies (58-64 KB each at 2,000 points a second, about 10 a second: the encoder's, SQLite's as
the outbox writes and reads them, the MQTT packet's)."""
TRIM_FROM = 2 * 1024 * 1024
"""Free bytes at the heap's top past which glibc gives them back (what its own adjustment had
reached in `roomwarden run` at 2,000 points: it no longer adjusts once the above is set)."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
"""mallopt's parameters (glibc's malloc.h)."""
ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": _M_MMAP_THRESHOLD,
               "MALLOC_TRIM_THRESHOLD_": _M_TRIM_THRESHOLD}
"""The variables glibc reads the same settings from when the process starts."""

READ_SIZE = 4096
"""Bytes a read of `roomwarden run`'s sockets asks for: sixteen of the largest Modbus TCP reply
(260 bytes); the panel's largest request (16 KiB of headers, a 64 KiB body) is a few reads."""


def trim() -> float:
    """Return the free pages of the C heap to the kernel; milliseconds taken (0 if the C library
    cannot)."""
    import ctypes  # (at the first trim, after a config apply)

    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return 0.0
    began = time.perf_counter()
    malloc_trim(0)
    return (time.perf_counter() - began) * 1000


def socket_read_size(size: int) -> int:
    """Make asyncio's socket transports (those of every event loop of this process: Modbus TCP,
    the panel, the control socket) read at most `size` bytes at a time; returns the size they
    read before. (`max_size` of asyncio's selector transports, which each read looks up.)"""
    transport = vars(selector_events)["_SelectorTransport"]  # private: there is no public knob
    before: int = transport.max_size
    transport.max_size = size
    return before


def map_large_blocks(threshold: int = MAPPED_FROM, trim_from: int = TRIM_FROM) -> bool:
    """Give a block of `threshold` bytes or more for which the heap has no free run a memory
    mapping of its own, returned to the kernel when freed, instead of growing the heap for it;
    True if the C library took it (glibc's `mallopt`; False elsewhere: musl).

    glibc's own threshold starts at 128 KiB and follows the largest mapped block freed (see
    the module docstring); set, it stays. The trim threshold is set with it (glibc stops
    adjusting both): `trim_from`, what it had reached by itself. A setting the environment
    gives (ENVIRONMENT: the unit's) glibc took at start, and it stands: only the others are
    set here, with ctypes."""
    wanted = {_M_MMAP_THRESHOLD: threshold, _M_TRIM_THRESHOLD: trim_from}
    for variable, parameter in ENVIRONMENT.items():
        if os.environ.get(variable):
            del wanted[parameter]
    if not wanted:
        return True
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return all([bool(mallopt(parameter, value)) for parameter, value in wanted.items()])
