"""The sd_notify protocol, client side: tell systemd READY, STATUS, STOPPING, RELOADING and
feed its watchdog.

The protocol (sd_notify(3), systemd's "NOTIFY_SOCKET" interface document): each message is one
datagram of newline-separated `KEY=value` lines sent to the AF_UNIX socket named by
`$NOTIFY_SOCKET` — a filesystem path, or an abstract-namespace name written with a leading
`@`. The service manager takes the sender's PID from the kernel's credentials
(`NotifyAccess=main`: only the main process may speak). `$WATCHDOG_USEC` (with
`$WATCHDOG_PID`, if set, naming this process) says the manager expects `WATCHDOG=1` at least
that often; half of it is the customary ping period.

Why our own ~150 lines rather than a library:

* systemd documents this interface as stable and meant to be reimplemented without libsystemd
  (sd_notify(3) and systemd's interface-stability notes; recent man pages even carry a
  standalone reference implementation);
* `systemd-python` (the official binding) is a C extension: on a Pi it needs libsystemd-dev
  and a compiler at install time, for one `sendto`; `cysystemd` likewise links libsystemd;
* the pure-Python packages are small and thinly maintained (`sdnotify` last released in 2017,
  `sd-notify` in 2020, `systemd-watchdog` and `async-sdnotify` are single-maintainer) and none
  gives what a safety daemon needs here: never raise into the caller, never block the event
  loop (the socket is non-blocking: a full queue drops one message rather than stalling the
  alarms), log a failure once rather than at every ping, and accept an explicit address so
  the tests can own the socket.

`Notifier` is a no-op when `$NOTIFY_SOCKET` is unset (run from a shell, in tests, in the demo);
every method returns whether the message left.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

log = logging.getLogger("roomwarden.service")

MAX_STATUS = 1000
"""STATUS= is cut to this many characters (systemd reads at most one page per message)."""


class Notifier:
    """One service's channel to its manager. Thread-safe; methods never raise."""

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None,
                 watchdog_pid: int | None = None) -> None:
        self.address = address or None
        self._watchdog_usec = watchdog_usec
        self._watchdog_pid = watchdog_pid
        self._target: str | bytes | None = None
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._failing = False
        self.sent = 0
        self.failures = 0
        if self.address is not None:
            if self.address.startswith("@"):  # abstract namespace: a leading NUL byte
                self._target = b"\0" + self.address[1:].encode()
            elif self.address.startswith("/"):
                self._target = self.address
            else:  # e.g. vsock:CID:PORT (systemd ≥ 254 in VMs): not needed on a gateway
                log.warning("event=notify_unsupported address=%s", self.address)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """From `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID` (unset: a no-op)."""
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"), watchdog_usec=_int(env.get("WATCHDOG_USEC")),
                   watchdog_pid=_int(env.get("WATCHDOG_PID")))

    @property
    def enabled(self) -> bool:
        """True when there is a manager to talk to."""
        return self._target is not None

    def watchdog_interval(self) -> float | None:
        """Seconds within which the manager wants `WATCHDOG=1`, or None if it wants none
        (no `WatchdogSec=`, or the watchdog belongs to another process)."""
        usec = self._watchdog_usec
        if usec is None or usec <= 0:
            return None
        if self._watchdog_pid is not None and self._watchdog_pid != os.getpid():
            return None
        return usec / 1e6

    # --- the messages ----------------------------------------------------------------------

    def ready(self, status: str | None = None) -> bool:
        """Start-up (or a reload) is complete."""
        return self.notify("READY=1", *_status(status))

    def status(self, text: str) -> bool:
        """One line shown by `systemctl status`."""
        return self.notify(*_status(text))

    def watchdog(self) -> bool:
        """The keep-alive ping: send it only when the service is really working."""
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """A clean stop has begun."""
        return self.notify("STOPPING=1", *_status(status))

    def reloading(self, status: str | None = None) -> bool:
        """A reload has begun; send `ready()` when it is done. MONOTONIC_USEC is what
        `Type=notify-reload` (systemd ≥ 253) matches the reload by; older managers ignore it."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", *_status(status))

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more time to start or stop (EXTEND_TIMEOUT_USEC)."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(0, int(seconds * 1e6))}")

    def notify(self, *lines: str) -> bool:
        """Send one message of `KEY=value` lines; False when it could not leave."""
        if self._target is None or not lines:
            return False
        data = "\n".join(lines).encode("utf-8", "replace") + b"\n"
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX,
                                                 socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                    self._socket.setblocking(False)  # a full queue must not stall the loop
                self._socket.sendto(data, self._target)
            except OSError as exc:
                self.failures += 1
                if not self._failing:
                    self._failing = True
                    log.warning("event=notify_failed address=%s error=%r (logged once until "
                                "it works again)", self.address, exc)
                return False
            self.sent += 1
            if self._failing:
                self._failing = False
                log.info("event=notify_restored address=%s failures=%d", self.address,
                         self.failures)
            return True

    def close(self) -> None:
        with self._lock:
            sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()


def _status(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    line = " ".join(text.split("\n")).replace("\r", " ")
    return (f"STATUS={line[:MAX_STATUS]}",)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        log.warning("event=notify_bad_environment value=%r", value)
        return None
