"""Is the wall clock to be trusted? The kernel's boot id and its clock-synchronisation state.

A Raspberry Pi has no RTC: it boots with a stale clock (fake-hwclock: the time of the last
shutdown, or 1970) and NTP steps it later, forward or back. A wall-clock difference taken
across a reboot is meaningful only once the clock is synchronised; within one boot the
monotonic clock gives a true interval whatever the wall clock does.

`synchronised()` takes systemd-timesyncd's flag file (/run/systemd/timesync/synchronized,
made at its first synchronisation after boot), else asks the kernel (adjtimex with no change:
STA_UNSYNC clear means an NTP client — chrony, ntpd, timesyncd — disciplines the clock; the
kernel sets it again at boot, at every `date -s` and when the discipline has been lost long
enough). Tests substitute these functions (or pass
their own to the classes that take them).

`SyncedCache` answers `synchronised()` for what is asked often (each alarm event says whether
the clock was synchronised when it was stamped): the answer is read again at most every
`REFRESH_S` seconds of the monotonic clock, and at once after the wall clock stepped
(`gateway.clock.WallStepWatch`: NTP's first step at a boot, a `date -s`), so a read costs
two clock reads (vDSO, no system call) between refreshes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from gateway.clock import Clock, WallStepWatch

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")
STA_UNSYNC = 0x0040
SET_FLOOR_NS = 1_577_836_800 * 10**9
"""2020-01-01T00:00:00Z: no RoomWarden clock reads earlier unless it was never set (a Pi without
an RTC before NTP): the gateway's /healthz and the central ingest both judge by it."""


def kernel_status() -> int | None:
    """The kernel clock's status bits (`adjtimex` with modes 0: reads, changes nothing);
    None where it cannot be called. (ctypes is imported here: once, at a restore.)"""
    import ctypes

    class Timex(ctypes.Structure):
        """The head of the kernel's `struct timex` (up to `status`), then room for the rest:
        ctypes lays it out as the platform's C does (long: 4 bytes on 32-bit ARM, 8 on
        64-bit)."""

        _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long),
                    ("freq", ctypes.c_long), ("maxerror", ctypes.c_long),
                    ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                    ("rest", ctypes.c_byte * 512)]

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = getattr(libc, "adjtimex", None) or getattr(libc, "ntp_adjtime", None)
    except (OSError, AttributeError):
        return None
    if call is None:
        return None
    timex = Timex()  # modes 0: read only
    call.argtypes = [ctypes.POINTER(Timex)]
    call.restype = ctypes.c_int
    if call(ctypes.byref(timex)) == -1:
        return None
    return int(timex.status)


def synchronised() -> bool:
    """True if the system clock is synchronised (see the module docstring). systemd-timesyncd's
    flag is looked at first (Raspberry Pi OS's and Debian's default: no ctypes, whose import
    and libc handle cost a gateway ~0.8 MiB for good); without it, the kernel is asked."""
    if TIMESYNCD_FLAG.exists():
        return True
    status = kernel_status()
    return status is not None and not status & STA_UNSYNC


def boot_id() -> str | None:
    """The kernel's id of this boot (a new one at every boot); None where there is none."""
    try:
        return BOOT_ID_PATH.read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


REFRESH_S = 60.0
"""Seconds a `SyncedCache` answer is kept (unless the wall clock steps). What a stale answer
costs: `True` kept after the clock lost its synchronisation — which happens by a step (then it
is read again at once) or, without one, after the discipline has been lost long enough, the
clock still about right; `False` kept up to this long after a synchronisation that did not
step the clock (it was already within 0.2 s): an event then says `false` and is judged as
one of a gateway of before the mark (gateway.ingest.timecheck)."""


class SyncedCache:
    """`synchronised()`, read again at most every `refresh` seconds and after a wall-clock step
    (see the module docstring). `read`: the function asked (None: this module's
    `synchronised`, looked up at each read, so a test may substitute it)."""

    def __init__(self, clock: Clock, *, refresh: float | None = None,
                 read: Callable[[], bool] | None = None) -> None:
        self._clock = clock
        self._refresh = REFRESH_S if refresh is None else refresh
        self._read = read
        self._watch = WallStepWatch(clock)
        self._value = False
        self._read_at = -math.inf

    def __call__(self) -> bool:
        now = self._clock.monotonic()
        stepped = self._watch.check() != 0
        if stepped or now - self._read_at >= self._refresh:
            self._value = bool((self._read or synchronised)())
            self._read_at = now
        return self._value
