"""Is a freshly applied config healthy? Buses open, every device answered or explained, rules
loaded and evaluated — decided as soon as the outcome is certain.

"Explained" means the device was already offline under the config that ran before (a dead
detector must not block every later change to the site), or it failed with its bus unable to
open *and* the bus was also unable to open before. A device that answered under the old config
and does not answer under the new one is exactly what a wrong unit id, baud rate or port looks
like: that fails the check, and the caller rolls back.

When the verdict is due:

- **healthy at once** when every device answered (or, explained, was polled again) and the
  rules ran on the new config;
- **failed at once** when a device that must answer sits on a link that cannot be opened —
  connection refused, no such serial port — and has stayed so for `REFUSED_CONFIRM` seconds
  with its polls failing (each poll tries to reconnect): nothing on that link can answer, so
  waiting is pointless;
- otherwise (a device that times out on an open link may yet answer) at `timeout`, the upper
  bound, with whatever has not answered by then as the problems.

The caller may add `needs`: something else the candidate must achieve within `timeout` (a
flash that came over MQTT: the uplink connected to the broker again; a changed panel:
listening). Each is asked at every step; what is still missing at `timeout` is a problem.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from gateway.clock import Clock
from gateway.field.bus_loop import BusLoop
from gateway.records import dataclass, field

if TYPE_CHECKING:
    from gateway.uplink.publisher import Uplink
    from gateway.uplink.settings import UplinkSettings

POLL_STEP = 0.05
MAX_STEP = 1.0
"""The check looks again after POLL_STEP, doubling to MAX_STEP (the idle audit)."""
REFUSED_CONFIRM = 0.5
"""Seconds a link must stay unopenable (polls failing too) before the check gives up on it."""
Need = Callable[[], str | None]
"""Something the candidate must achieve besides its buses and rules: None once it has, else
what is still missing (the problem if still missing at the deadline)."""


@dataclass(frozen=True, slots=True)
class HealthReport:
    ok: bool
    problems: list[str] = field(default_factory=list)
    """Why the config is not healthy (empty when ok)."""
    notes: list[str] = field(default_factory=list)
    """Devices accepted although silent, and why."""

    def summary(self) -> str:
        if self.ok:
            return "healthy" + (f" ({'; '.join(self.notes)})" if self.notes else "")
        return "; ".join(self.problems)


def offline_devices(loops: Sequence[BusLoop]) -> dict[str, str]:
    """Device id → why it is offline, for every device the running config cannot reach."""
    silent: dict[str, str] = {}
    for loop in loops:
        for device, health in loop.stats.device_health.items():
            if health.online is False or (health.last_success_mono is None and health.failures):
                silent[device] = health.last_error or "offline"
    return silent


def link_down(loop: BusLoop) -> bool:
    """The bus's link could not be opened and is still not open (a link that says whether it
    is connected is asked; one that does not is judged by the failed open alone)."""
    if loop.link_open is not False:
        return False
    return getattr(loop.link, "connected", None) is not True


def judge(loops: Sequence[BusLoop], explained: Mapping[str, str], *,
          evaluated: bool, final: bool, elapsed: float = 0.0,
          missing: Sequence[str] = ()) -> HealthReport | None:
    """The verdict on the current state, or None while it is still too early to tell.

    `elapsed`: seconds the check has been running; a device on a link that is down (see
    `link_down`) counts as certainly failed once this reaches `REFUSED_CONFIRM`. `missing`:
    the needs not met yet (see the module docstring)."""
    problems: list[str] = []
    certain: list[str] = []
    pending: list[str] = []
    notes: list[str] = []
    waiting = False
    for loop in loops:
        down = link_down(loop)
        dead: list[str] = []
        for device, health in loop.stats.device_health.items():
            if health.last_success_mono is not None:
                continue
            if device in explained:
                if health.polls:
                    notes.append(f"{device} silent as before ({explained[device]})")
                    continue
                waiting = True
                continue
            waiting = True
            if down and health.polls and elapsed >= REFUSED_CONFIRM:
                dead.append(device)
                continue
            pending.append(device)
            if final:
                why = health.last_error or "never polled"
                where = f"bus {loop.bus_id}" + (f" (cannot open: {loop.link_error})"
                                                if loop.link_error else "")
                problems.append(f"device {device} on {where} did not answer: {why}")
        if dead:
            certain.append(f"bus {loop.bus_id}: the link cannot be opened "
                           f"({_short(loop.link_error)}): {_devices(dead)} did not answer")
    if certain:
        if pending and not final:
            problems = [f"{_devices(pending)} had not answered yet"]
        return HealthReport(ok=False, problems=certain + problems, notes=notes)
    if not evaluated:
        waiting = True
        if final:
            problems.append("the rules were not evaluated")
    if missing:
        waiting = True
        if final:
            problems.extend(missing)
    if waiting and not final:
        return None
    return HealthReport(ok=not problems, problems=problems, notes=notes)


def _devices(ids: Sequence[str], shown: int = 5) -> str:
    """`device th-1`, `3 devices (th-1, th-2, th-3)`, `9 devices (a, b, c, d, e, …)`."""
    if len(ids) == 1:
        return f"device {ids[0]}"
    more = ", …" if len(ids) > shown else ""
    return f"{len(ids)} devices ({', '.join(ids[:shown])}{more})"


def _short(text: str | None, limit: int = 160) -> str:
    text = " ".join((text or "unknown error").split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


async def check_health(loops: Callable[[], Sequence[BusLoop]], explained: Mapping[str, str],
                       evaluations: Callable[[], int], clock: Clock,
                       timeout: float, needs: Sequence[Need] = ()) -> HealthReport:
    """Wait until the verdict on the new config is certain (see the module docstring), at
    most `timeout` seconds; return it."""
    start_evaluations = evaluations()
    steps = 0
    began = clock.monotonic()
    deadline = began + timeout
    while True:
        now = clock.monotonic()
        missing = [m for need in needs if (m := need()) is not None]
        report = judge(loops(), explained, evaluated=evaluations() > start_evaluations,
                       final=now >= deadline, elapsed=now - began, missing=missing)
        if report is not None:
            return report
        # quick at first (a good config is judged within its first polls), then once a
        # second: a trial waiting out its timeout on a dead device woke 20 times a second
        # (never past the deadline: the final look is at it, a trial is no longer than asked)
        await asyncio.sleep(min(MAX_STEP, POLL_STEP * 2 ** min(steps, 8), deadline - now))
        steps += 1


def uplink_connected(uplink: Callable[[], Uplink | None], settings: UplinkSettings) -> Need:
    """A flash that came over MQTT: the (new) uplink connected to the broker, so that the
    answer and the next flash can reach the gateway."""
    where = f"{settings.broker}:{settings.port}"

    def need() -> str | None:
        running = uplink()
        status = running.status() if running is not None else None
        if status is not None and status.connected:
            return None
        why = f": {_short(status.last_error)}" if status is not None and status.last_error \
            else ""
        return (f"the uplink did not connect to the broker {where}{why} (a flash must leave "
                f"the gateway reachable for the next one)")
    return need


def panel_listening(ready: asyncio.Event, bind: str, port: int) -> Need:
    """A changed panel listens (its port free, its address the machine's own)."""
    def need() -> str | None:
        return None if ready.is_set() else f"the panel could not listen on {bind}:{port}"
    return need
