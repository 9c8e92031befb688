"""Is a freshly applied config healthy? Buses open, every device answered or explained, rules
loaded and evaluated.

"Explained" means the device was already offline under the config that ran before (a dead
detector must not block every later change to the site), or it failed with its bus unable to
open *and* the bus was also unable to open before. A device that answered under the old config
and does not answer under the new one is exactly what a wrong unit id, baud rate or port looks
like: that fails the check, and the caller rolls back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from gateway.clock import Clock
from gateway.field.bus_loop import BusLoop

POLL_STEP = 0.05


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


def judge(loops: Sequence[BusLoop], explained: Mapping[str, str], *,
          evaluated: bool, final: bool) -> HealthReport | None:
    """The verdict on the current state, or None while it is still too early to tell (some
    device has not answered yet and `final` is False)."""
    problems: list[str] = []
    notes: list[str] = []
    waiting = False
    for loop in loops:
        link_error = getattr(loop, "link_error", None)
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
            if final:
                why = health.last_error or "never polled"
                where = f"bus {loop.bus_id}" + (f" (cannot open: {link_error})"
                                                if link_error else "")
                problems.append(f"device {device} on {where} did not answer: {why}")
    if not evaluated:
        waiting = True
        if final:
            problems.append("the rules were not evaluated")
    if waiting and not final:
        return None
    return HealthReport(ok=not problems, problems=problems, notes=notes)


async def check_health(loops: Callable[[], Sequence[BusLoop]], explained: Mapping[str, str],
                       evaluations: Callable[[], int], clock: Clock,
                       timeout: float) -> HealthReport:
    """Wait until every device of the new config answered (or is explained) and the rules ran
    once, or until `timeout`; return the verdict."""
    start_evaluations = evaluations()
    deadline = clock.monotonic() + timeout
    while True:
        final = clock.monotonic() >= deadline
        report = judge(loops(), explained, evaluated=evaluations() > start_evaluations,
                       final=final)
        if report is not None:
            return report
        await asyncio.sleep(POLL_STEP)
