"""The gateway's health: ok, degraded or failing, per check and overall (`GET /healthz`).

Checks, each judged from the gateway's own state at the moment of asking:

- `buses`: **failing** when a bus loop is stalled — it has made no progress
  (`BusLoop.alive_mono`: moves after every poll and at least every second while it waits)
  for longer than `BusLoop.stall_limit` (its worst legitimate poll + queued output writes + a
  margin; the same test withholds the systemd watchdog) — or when its link could not be
  opened or was lost (`BusLoop.link_open` false: serial port missing, a Modbus TCP peer gone)
  or every device of the bus is offline (power, cable or converter gone: a run of silent
  devices does it at once, gateway.field.bus_loop). **degraded** when some are offline.
  Devices not yet polled count as neither.
- `rules`: **failing** when a round of the rules has been owed for `EVALUATOR_STALL_AFTER`
  seconds without completing (`Gateway.evaluator_lag`, gateway.evaluator: since samples
  arrived, or since the deadline the evaluator sleeps to; a round that raises does not count;
  an evaluator asleep with nothing owed is fine). A gateway that has never evaluated owes its
  first round from the start of its running config.
- `rule_parameters`: **degraded** when a rule bound to a subject is not evaluated because a
  parameter it needs has no value (a breaker's `rating_a` nobody set: the branch load rules
  of that meter never fire; gateway.rules.coverage, also logged once at start,
  `event=rule_not_evaluated`, and warned by `roomwarden check`). A parameter the rule pack
  leaves unset on purpose for a battery chemistry (no block-above-ambient limit for LFP) is
  named in the detail but stays ok.
- `clock`: **degraded** while the wall clock is before 2020 — never set (a Pi without an RTC
  before NTP, at 1970): every event time is wrong and the central ingest refuses them
  (gateway.ingest.timecheck); the detail says whether systemd-timesyncd has synchronised it
  (docs/time.md). Timing itself runs on the monotonic clock and is not affected.
- `outputs`: **degraded** when an alarm output's last write failed (the failure is also an
  alarm, `actions.output_failure`; restarting the gateway would not mend a relay).
- `journal`, `event_loop`: **degraded** while the alarm journal cannot write, or the event loop
  keeps waking seconds late (the watchdog is withheld then): gateway.ops.liveness_health.
- `uplink`: **degraded** when configured and not connected, when connected but the broker
  refused an inbound subscription (operator commands, flashed configs or the ingest's
  acknowledgements do not arrive), when its outbox keeps failing, when it carries out unsigned
  operator commands, or when nothing it published has been confirmed for 2 minutes:
  gateway.ops.uplink_health. `not configured` is ok.
- `config`: **degraded** while the booted config needed a work-round (gateway.ops.config_health).

**Service health vs. site alarm state.** The checks above say whether the *gateway* works
(`service`: the worst check). Whether the *site* is in trouble is a different question,
answered beside it (`site`): `normal` (no alarm annunciated), `active` (alarms annunciated,
none of them critical and active, no flood) or `alarm` (a critical alarm is active, or an alarm
flood is on). The overall `status` is the service's, except that it is never `ok` — nor
`degraded` — while the site is in `alarm`: then it says `alarm` (a failing service still says
`failing`). `summary` says both: `Service: ok · Site: ALARM — 1 critical active, flood`.

HTTP: `/healthz` answers 503 only when the service is failing, else 200 — also during a site
alarm: nothing may pull or restart the gateway because a room is on fire (when it is needed
most); whoever watches the site reads `site` (or `roomwarden_alarms_active`, `_alarm_flood`).

The report is plain data, written as JSON without a pydantic model (gateway.ops.health_report,
issue 15).
"""

from __future__ import annotations

import time
import weakref

from gateway.field.bus_loop import BusLoop
from gateway.ops.config_health import config_trouble
from gateway.ops.health_report import (
    CheckResult,
    HealthReport,
    Level,
    SiteHealth,
    SiteLevel,
    overall,
    site_health,
    worst,
)
from gateway.ops.liveness_health import journal_trouble, loop_trouble, short
from gateway.ops.source import MetricsSource
from gateway.ops.uplink_health import uplink_trouble
from gateway.rules.unconfigured import summary

__all__ = ["EVALUATOR_STALL_AFTER", "CheckResult", "HealthMonitor", "HealthReport", "Level",
           "SiteHealth", "SiteLevel", "check_clock", "monitor_for", "overall",
           "progress_age", "site_health", "worst"]

EVALUATOR_STALL_AFTER = 10.0
"""Seconds a round of the rules may be owed without completing before the rules check fails
(the evaluator runs one as soon as samples arrive or a deadline comes)."""


def progress_age(loop: BusLoop, source: MetricsSource) -> float:
    """Seconds since `loop` last made progress."""
    return max(0.0, source.clock.monotonic() - loop.alive_mono)


def monitor_for(source: MetricsSource) -> HealthMonitor:
    """The one HealthMonitor of `source` (made on first use), so /healthz, /metrics and the
    status report share what it has seen of the evaluator, even across panel restarts."""
    try:
        monitor = _MONITORS.get(source)
        if monitor is None:
            monitor = _MONITORS[source] = HealthMonitor(source)
        return monitor
    except TypeError:  # not hashable or not weak-referenceable: a fresh one
        return HealthMonitor(source)


def _checked(trouble: tuple[bool, str]) -> CheckResult:
    degraded, detail = trouble
    return CheckResult(status=Level.DEGRADED if degraded else Level.OK, detail=detail)


def check_clock(now_ns: int) -> CheckResult:
    """The wall clock as event times need it (not the kernel's sync state via adjtimex: that
    costs ctypes at every request; timesyncd's flag is a file)."""
    from gateway import clocksync

    synced = "synchronised by systemd-timesyncd" if clocksync.TIMESYNCD_FLAG.exists() else \
        "not known to be synchronised"
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_ns / 1e9))
    if now_ns < clocksync.SET_FLOOR_NS:
        return CheckResult(status=Level.DEGRADED,
                           detail=f"the system clock is not set ({when}): event times are "
                                  f"wrong and the central ingest refuses them; {synced} — "
                                  "check NTP")
    return CheckResult(status=Level.OK, detail=f"{when}, {synced}")


class HealthMonitor:
    """Judges a gateway's health; one monitor serves every request of one server."""

    def __init__(self, source: MetricsSource, *,
                 evaluator_stall_after: float = EVALUATOR_STALL_AFTER) -> None:
        self.source = source
        self.evaluator_stall_after = evaluator_stall_after

    def evaluator_age(self) -> float:
        """Seconds a round of the rules has been owed and not completed."""
        return self.source.evaluator_lag()

    def check(self) -> HealthReport:
        checks = {
            "buses": self.check_buses(),
            "rules": self.check_rules(),
            "rule_parameters": self.check_rule_parameters(),
            "clock": check_clock(self.source.clock.now_ns()),
            "outputs": self.check_outputs(),
            "journal": _checked(journal_trouble(self.source.core.journal)),
            "event_loop": _checked(loop_trouble(self.source.loop_lag)),
            "uplink": self.check_uplink(),
            "config": _checked(config_trouble(self.source)),
        }
        service = worst([c.status for c in checks.values()])
        alarms = self.source.core.alarms
        site = site_health(alarms.active(), alarms.flood.active)
        return HealthReport(ok=service is not Level.FAILING, status=overall(service, site),
                            checks=checks, service=service, site=site,
                            summary=f"Service: {service.value} · Site: {site.detail}")

    def check_buses(self) -> CheckResult:
        src = self.source
        failing: list[str] = []
        degraded: list[str] = []
        online = total = 0
        for loop in src.bus_loops:
            healths = loop.stats.device_health
            age, limit = progress_age(loop, src), loop.stall_limit
            offline = [d for d, h in healths.items() if h.online is False]
            online += sum(1 for h in healths.values() if h.online)
            total += len(healths)
            if age > limit:
                failing.append(f"{loop.bus_id} stalled ({age:.0f} s without progress, "
                               f"limit {limit:.0f} s)")
            elif loop.link_open is False:
                failing.append(f"{loop.bus_id}: link not open ({short(loop.link_error)})")
            elif healths and len(offline) == len(healths):
                failing.append(f"{loop.bus_id}: no device answers")
            elif offline:
                shown = ", ".join(offline[:5]) + (" …" if len(offline) > 5 else "")
                degraded.append(f"{loop.bus_id}: {len(offline)} offline ({shown})")
            partial = [(d, h.last_error) for d, h in healths.items() if h.online and h.degraded]
            if partial and age <= limit:
                shown = ", ".join(f"{d} ({short(e)})" for d, e in partial[:3]) + (
                    " …" if len(partial) > 3 else "")
                degraded.append(f"{loop.bus_id}: {len(partial)} reading only in part ({shown})")
        summary = f"{online}/{total} devices online"
        if failing:
            return CheckResult(status=Level.FAILING,
                               detail="; ".join([*failing, *degraded, summary]))
        if degraded:
            return CheckResult(status=Level.DEGRADED, detail="; ".join([*degraded, summary]))
        count = len(src.bus_loops)
        return CheckResult(status=Level.OK,  # issue 14: "1 bus", not "1 buses"
                           detail=f"{count} bus{'es' * (count != 1)} polling; {summary}")

    def check_rules(self) -> CheckResult:
        age = self.evaluator_age()
        if age > self.evaluator_stall_after:
            return CheckResult(status=Level.FAILING,
                               detail=f"no rule evaluation for {age:.0f} s")
        failing = self.source.core.engine.faults.report()
        if failing:  # gateway.rules.faults: those bindings keep their last evaluation
            shown = ", ".join(f"{f['rule']}@{f['subject']} ({f['error']})" for f in failing[:3])
            return CheckResult(status=Level.DEGRADED,
                               detail=f"{len(failing)} rule binding"
                                      f"{'s' * (len(failing) != 1)} failing: {shown}"
                                      f"{' …' if len(failing) > 3 else ''}; "
                                      f"{self.source.evaluations} evaluations")
        return CheckResult(status=Level.OK,
                           detail=f"{self.source.evaluations} evaluations")

    def check_rule_parameters(self) -> CheckResult:
        """Rule bindings left unevaluated for a parameter without a value."""
        items = self.source.core.engine.unconfigured_report()
        unset = [i for i in items if not i.by_design]
        if unset:
            n = len(unset)
            return CheckResult(status=Level.DEGRADED,
                               detail=f"not evaluated, no value: {summary(unset)} — {n} "
                                      f"rule binding{'s' * (n != 1)}; set it under rules: "
                                      f"parameters")
        if items:
            return CheckResult(status=Level.OK, detail=f"not evaluated for their battery "
                                                       f"chemistry by the packs: {summary(items)}")
        return CheckResult(status=Level.OK, detail="every bound rule has its parameters")

    def check_outputs(self) -> CheckResult:
        src = self.source
        failed = sorted(o for o, s in src.driver.state.items() if s.failed)
        if failed:
            return CheckResult(status=Level.DEGRADED,
                               detail=f"{len(failed)} failed: {', '.join(failed)}")
        return CheckResult(status=Level.OK, detail=f"{len(src.driver.state)} outputs")

    def check_uplink(self) -> CheckResult:
        return _checked(uplink_trouble(self.source.uplink,
                                       self.source.loaded.config.operators.allow_unsigned))


_MONITORS: weakref.WeakKeyDictionary[MetricsSource, HealthMonitor] = weakref.WeakKeyDictionary()
