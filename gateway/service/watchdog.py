"""Feed systemd's watchdog only while the gateway really works.

A bus loop is alive when it made progress recently: `BusLoop.alive_mono` moves after every
poll, and while the loop sleeps until its next poll it counts as alive up to that poll's due
time (no wake-up needed). It may go `BusLoop.stall_limit` seconds without progress — its
worst legitimate single poll (every request answered just inside the bus timeout, after a
reconnect), the output writes that may be queued before it (`configure_stall_limits`), and a
margin. Past that the loop is hung (a driver that ignores its timeout, a poll awaiting
something that never comes): the feeder stops pinging, says which loop in `STATUS=` and the
log, and systemd restarts the service `WatchdogSec=` after the last ping. An event loop blocked
for good stops the pings by itself.

Asleep when idle: the feeder wakes for the next ping (half of `WatchdogSec=`) or the first
moment a loop could pass its limit (`BusLoop.alive_until + stall_limit`), whichever comes
first — not every second. Extra checks are judged at each wake, so always before a ping. While
the pings are withheld it checks every `CHECK_EVERY` (STATUS= says why, so that a periodic
status line elsewhere cannot hide it).

A blocked event loop does not always stop the pings by itself: one that is blocked for seconds
at a time, between which the feeder runs, kept feeding them (liveness audit L1: every round of
the rules waited 10 s for another process's lock on the alarm journal). Given a `LoopLag`, the
feeder tells it when it sleeps and wakes — no wake-up of its own — and withholds the pings while
the loop's wake-ups come seconds late again and again (gateway.service.looplag).

`feed_watchdog` is the asyncio feeder of the gateway; `feed_watchdog_blocking` the same for a
threaded service (the central ingest), given checks of its threads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from gateway.clock import Clock, SystemClock
from gateway.service.looplag import LoopLag
from gateway.service.notify import Notifier

if TYPE_CHECKING:  # annotations only: the ingest feeds the watchdog without the edge's modules
    from gateway.config.loader import LoadedConfig
    from gateway.field.bus_loop import BusLoop

log = logging.getLogger("roomwarden.service")

Check = Callable[[], str | None]
"""An extra liveness check: None when fine, else what is wrong (one line)."""

DEFAULT_PERIOD = 5.0
"""Ping period when the manager gave no WATCHDOG_USEC (pings are harmless then)."""
CHECK_EVERY = 1.0
"""While the pings are withheld, liveness is checked this often (to resume promptly)."""
MIN_WAIT = 0.01
"""A wake-up at a deadline comes this much after it (the limit is passed, not just reached)."""
WRITE_ROUND_TRIPS = 2
"""Modbus round trips of one output write attempt: the write and its read-back."""


def configure_stall_limits(loaded: LoadedConfig, loops: Sequence[BusLoop]) -> None:
    """Give each loop the time its outputs' writes may take before a poll (all of them at
    once, each failing every attempt: `write_retries + 1` × write + read-back, each up to the
    bus timeout) as `stall_allowance`. Call after building the loops (and after a reload)."""
    buses = {bus.id: bus for bus in loaded.config.buses}
    devices = {device.id: device for device in loaded.config.devices}
    allowance: dict[str, float] = {}
    for output in loaded.config.outputs:
        device = devices.get(output.device)
        if device is None or device.bus not in buses:
            continue
        trips = WRITE_ROUND_TRIPS if output.verify else 1
        seconds = (output.write_retries + 1) * trips * buses[device.bus].timeout
        allowance[device.bus] = allowance.get(device.bus, 0.0) + seconds
    for loop in loops:
        loop.stall_allowance = allowance.get(loop.bus_id, 0.0)


def stall_deadlines(loops: Sequence[BusLoop]) -> list[float]:
    """For each loop, when it would count as hung if it made no more progress."""
    return [loop.alive_until + loop.stall_limit for loop in loops]


def loop_problems(loops: Sequence[BusLoop], now: float) -> list[tuple[str, float, float]]:
    """(bus id, seconds without progress, its limit) for every loop past its stall limit."""
    hung = []
    for loop in loops:
        stalled_for = now - loop.alive_mono
        limit = loop.stall_limit
        if stalled_for > limit:
            hung.append((loop.bus_id, stalled_for, limit))
    return hung


class _Feeder:
    """What both feeders share: decide, ping, and report changes once."""

    def __init__(self, notifier: Notifier, clock: Clock, period: float | None) -> None:
        self.notifier = notifier
        self.clock = clock
        interval = notifier.watchdog_interval()
        self.period = period if period is not None else (
            interval / 2 if interval is not None else DEFAULT_PERIOD)
        self.check_every = min(CHECK_EVERY, self.period)
        self.last_ping: float | None = None
        self.withheld: tuple[str, ...] = ()

    def step(self, hung: Sequence[tuple[str, float, float]],
             failed: Sequence[tuple[int, str]]) -> None:
        now = self.clock.monotonic()
        if not hung and not failed:
            if self.withheld:
                log.warning("event=watchdog_resumed after=%s", ",".join(self.withheld))
                self.notifier.status("running (watchdog resumed)")
                self.withheld = ()
            if self.last_ping is None or now - self.last_ping >= self.period:
                self.notifier.watchdog()
                self.last_ping = now
            return
        names = tuple([bus for bus, _, _ in hung] + [f"check{i}" for i, _ in failed])
        if names != self.withheld:  # logged once per change; STATUS at every check, so a
            self.withheld = names   # periodic status line elsewhere cannot hide it
            for bus, stalled_for, limit in hung:
                log.error("event=watchdog_withheld bus=%s stalled_for=%.1fs limit=%.1fs", bus,
                          stalled_for, limit)
            for _, text in failed:
                log.error("event=watchdog_withheld check=%r", text)
        parts = [f"bus {bus} hung for {stalled_for:.0f}s (limit {limit:.0f}s)"
                 for bus, stalled_for, limit in hung] + [text for _, text in failed]
        self.notifier.status("watchdog withheld: " + "; ".join(parts))

    def sleep_for(self, deadlines: Sequence[float] = ()) -> float:
        """Seconds until the next thing to do: a ping, a loop's stall deadline, or — while
        withheld — the next check."""
        if self.withheld:
            return self.check_every
        now = self.clock.monotonic()
        ping = 0.0 if self.last_ping is None else self.last_ping + self.period - now
        return max(MIN_WAIT, min([ping, *(d - now for d in deadlines)]) + MIN_WAIT)


def _run_checks(checks: Sequence[Check]) -> list[tuple[int, str]]:
    failed = []
    for index, check in enumerate(checks):
        try:
            result = check()
        except Exception as exc:  # a broken check withholds: better a restart than a lie
            result = f"check {getattr(check, '__name__', check)!s} raised {exc!r}"
        if result is not None:
            failed.append((index, result))
    return failed


async def feed_watchdog(notifier: Notifier, loops: Callable[[], Sequence[BusLoop]],
                        clock: Clock | None = None, extra_checks: Sequence[Check] = (), *,
                        period: float | None = None, lag: LoopLag | None = None) -> None:
    """Ping WATCHDOG=1 every `period` (default: half of WATCHDOG_USEC) while every loop of
    `loops()` is alive, every extra check returns None and the event loop is not blocked
    (`lag`, measured at this feeder's own wake-ups); withhold it otherwise. `loops` is
    called each time: the daemon swaps its bus loops on a config reload. Runs until
    cancelled; never raises otherwise."""
    feeder = _Feeder(notifier, clock or SystemClock(), period)
    checks = [*extra_checks, lag.problem] if lag is not None else list(extra_checks)
    while True:
        wait = feeder.check_every
        try:
            if lag is not None:
                lag.woke()
            current = loops()
            feeder.step(loop_problems(current, feeder.clock.monotonic()), _run_checks(checks))
            wait = feeder.sleep_for(stall_deadlines(current))
        except Exception:  # never take the gateway down; the missing pings will
            log.exception("event=watchdog_feeder_failed")
        if lag is not None:
            lag.sleeping(wait)
        await asyncio.sleep(wait)


def feed_watchdog_blocking(notifier: Notifier, stop: threading.Event,
                           checks: Sequence[Check], *, clock: Clock | None = None,
                           period: float | None = None) -> None:
    """The same for a threaded service: block until `stop` is set, pinging while every
    check returns None (e.g. its worker threads are alive and their heartbeats recent)."""
    feeder = _Feeder(notifier, clock or SystemClock(), period)
    while True:
        wait = feeder.check_every
        try:
            feeder.step((), _run_checks(checks))
            wait = feeder.sleep_for()
        except Exception:
            log.exception("event=watchdog_feeder_failed")
        if stop.wait(wait):
            return
