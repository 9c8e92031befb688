"""Gateway clocks as the ingest sees them: times no database should get, and clocks that run off.

Everything a gateway sends is stamped by its own clock, and a gateway clock can be far off:

* unset — a Raspberry Pi has no RTC, and until NTP sets it its clock may say 1970 (the clock
  audit: a critical hydrogen alarm stamped 1970-01-02 was acknowledged by the ingest and
  dropped by VictoriaMetrics as `small_timestamp`, with no error anywhere);
* ahead — an RTC kept in local time (China's +8 h) read as UTC before NTP corrects it (the
  central audit: a critical hydrogen alarm stamped 8 h ahead was written and acknowledged, and
  *Active alarms* showed nothing until that time came; then, after its clear, for 30 days);
* behind — fake-hwclock restoring the time of an old shutdown (the central audit: an alarm
  stamped 90 days back was acknowledged, and VictoriaMetrics, whose Debian default retention
  is a month, answered 204 and dropped it as `small_timestamp`; *Active alarms* looks 30 days
  back, so even a longer retention would never have shown it).

So a message is never written at a time before `FLOOR_NS` (2020-01-01) or more than
`AHEAD_NS` (5 minutes) ahead of the ingest's clock, nor telemetry older than the database's
retention (`telemetry_retention`, default 30 days), nor an alarm event or live online state
older than `max_event_age` (default a day) — unless it is an alarm event that says its
gateway's clock was synchronised when it stamped it (`clock_synced`, sent since 6 Dec 2026:
gateway.clocksync): its time is then the gateway's true time, a genuine backlog (an uplink
down for days), and it is written at it up to `telemetry_retention` (beyond it the database
would drop it: it is re-stamped as below, its time kept in `gateway_ts`). An event without
the mark (an older gateway) or marked `false` is judged by its age as before: a clock that
NTP had not synchronised may have been restored to any old time. (A live state carries no
mark: a gateway's outbox keeps only its newest unpublished state, so a live one is never a
backlog.) `implausible` says why. Then:

* telemetry is dead-lettered (kind `clock`) with the time it carries and why — kept in the
  dead-letter log, never written as if it were true, and counted: re-stamping thousands of
  samples would lie about when each was measured (between `max_event_age` and the retention
  it is written at its own time: a genuine backlog, or a wrong clock's readings, where they
  were stamped);
* an alarm event or a live gateway state is written at the time the ingest first received it
  (`Restamper`; wall clock, ns), marked `clock_suspect=true` with the gateway's own time kept
  in `gateway_ts` (gateway.ingest.schema.restamped), logged (`event=gateway_clock_restamped`,
  at most a line a minute per gateway) and counted
  (`roomwarden_ingest_messages_restamped_total{reason="clock"}`): central monitoring must see
  a live alarm now (in its Active alarms table) and that the gateway is alive. An alarm
  event of a gateway that was away longer than `max_event_age` (a genuine backlog) whose
  clock was not known to be synchronised is thus written at its arrival too, its true time in
  `gateway_ts`; gateway.ingest.alarmorder keeps it before any later event of its alarm
  already written (one at its own time, `clock_synced`, is before it anyway: a lower `seq`
  stamped earlier). The first receive time is
  remembered by the message's duplicate key (gateway.ingest.dedup, durably, before the
  write), so a redelivery — QoS 1, a gateway's replay after a reconnect — is recognised as a
  duplicate, and would be written at that same time if at all, never as a second row at
  another. A retained state delivered on subscribing, never received live, is as old as it is
  (when it was made is unknown): unset or ahead, it is dead-lettered like telemetry; merely
  old, or an `offline` state (a last will carries the time of its connection,
  gateway.ingest.lastseen), it keeps its time;
* a gateway whose live state (a non-retained `state` message, sent as it is made) is more than
  `SKEW_NS` (a minute) off the ingest's clock is shown as
  `roomwarden_ingest_gateway_clock_skew_seconds`, and, if its time is plausible, logged
  (`event=gateway_clock_skew`, at most a line a minute per gateway): its points and alarms are
  stored at its times, so the dashboards show them that much early or late.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NamedTuple

from gateway.clocksync import SET_FLOOR_NS
from gateway.contract.wire import AlarmEventMessage, GatewayState, Message, TelemetryBatch
from gateway.ingest.dedup import SeenKey
from gateway.ops.connections import RateLimitFilter

log = logging.getLogger("roomwarden.ingest")


def per_gateway(record: logging.LogRecord) -> str:
    """What makes two lines alike: their event and (site, gateway), the first two args."""
    args = record.args if isinstance(record.args, tuple) else ()
    return f"{str(record.msg)[:30]}{args[:2]!r}"


for _event in ("event=gateway_clock_skew", "event=gateway_clock_restamped",
               "event=alarm_event_reordered", "event=gateway_id_conflict"):
    # a line a minute per gateway (gateway.ingest.gatewaywatch logs the second)
    log.addFilter(RateLimitFilter(prefix=_event, kind=per_gateway))

FLOOR_NS = SET_FLOOR_NS
"""2020-01-01T00:00:00Z: no RoomWarden message is older; a time before it is an unset clock."""
AHEAD_NS = 300 * 10**9
"""How far ahead of the ingest's clock a gateway's time may be (5 minutes). Further ahead the
gateway's clock is wrong, not merely drifting: NTP keeps a clock within milliseconds, and
systemd-timesyncd steps a wrong one at once. Written further ahead, an alarm would be
invisible to *Active alarms* until that time came (the 8 h of an RTC kept in China's local
time). Five minutes leaves room for a gateway or an ingest whose NTP is briefly lost, and
bounds what the ordering of an alarm's events (gateway.ingest.alarmorder) and the placing of a
last will (gateway.ingest.lastseen) may put in the future."""
MAX_EVENT_AGE_NS = 86_400 * 10**9
"""Default of the ingest's `max_event_age` (a day): an alarm event or live state older than it
is written at its receive time (see the module docstring)."""
RETENTION_NS = 30 * 86_400 * 10**9
"""Default of the ingest's `telemetry_retention` (30 days: within VictoriaMetrics' default
`-retentionPeriod` of a month, 31 days)."""
SKEW_NS = 60 * 10**9
MAX_GATEWAYS = 10_000
"""Gateways whose skew is kept (beyond it the oldest entries go)."""


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="seconds")


def stamped(message: Message) -> tuple[int, int] | None:
    """(earliest, latest) time a message carries (None: it carries none)."""
    if isinstance(message, TelemetryBatch):  # one pass, no list: thousands of rows a batch
        low = high = 0
        for row in message.samples:
            dt = row[2]
            if dt < low:
                low = dt
            elif dt > high:
                high = dt
        return message.t0 + low, message.t0 + high
    if isinstance(message, AlarmEventMessage | GatewayState):
        return message.ts, message.ts
    return None  # (incident records go to the ingest's own store, whatever their time)


class Window(NamedTuple):
    """How old a message may be (ns): the ingest's `max_event_age` and `telemetry_retention`."""

    max_event_age_ns: int = MAX_EVENT_AGE_NS
    retention_ns: int = RETENTION_NS


DEFAULT_WINDOW = Window()


def implausible(message: Message, now_ns: int, window: Window = DEFAULT_WINDOW, *,
                retained: bool = False) -> str | None:
    """Why the database must not get `message` as it stands (None: it may). `retained`: a
    retained state delivered on subscribing (its age says nothing about the gateway's clock)."""
    times = stamped(message)
    if times is None:
        return None
    earliest, latest = times
    if earliest < FLOOR_NS:
        return (f"stamped {_iso(earliest)}, before 2020: the gateway's clock was not set "
                "(a Pi without an RTC before NTP); not written")
    if latest > now_ns + AHEAD_NS:
        return (f"stamped {_iso(latest)}, {_span(latest - now_ns)} ahead of the ingest's "
                f"clock ({_iso(now_ns)}), more than {_span(AHEAD_NS)}: a gateway clock set "
                "wrong (an RTC kept in local time, say); not written at that time")
    if isinstance(message, TelemetryBatch):
        if earliest < now_ns - window.retention_ns:
            return (f"stamped {_iso(earliest)}, {_span(now_ns - earliest)} before the "
                    f"ingest's clock ({_iso(now_ns)}), older than telemetry_retention "
                    f"({_span(window.retention_ns)}): the database would drop it (a clock "
                    "restored to an old time, or a backlog older than the database keeps); "
                    "not written")
    elif isinstance(message, AlarmEventMessage) and message.clock_synced:
        if earliest < now_ns - window.retention_ns:  # (a backlog: at its time up to there)
            return (f"stamped {_iso(earliest)}, {_span(now_ns - earliest)} before the "
                    f"ingest's clock ({_iso(now_ns)}) by a synchronised clock, older than "
                    f"telemetry_retention ({_span(window.retention_ns)}): the database would "
                    "drop it (a backlog older than the database keeps); not written at that "
                    "time")
    elif earliest < now_ns - window.max_event_age_ns and (
            isinstance(message, AlarmEventMessage)
            or (isinstance(message, GatewayState) and message.status == "online"
                and not retained)):
        return (f"stamped {_iso(earliest)}, {_span(now_ns - earliest)} before the ingest's "
                f"clock ({_iso(now_ns)}), older than max_event_age "
                f"({_span(window.max_event_age_ns)}): a clock restored to an old time, or a "
                "backlog; not written at that time")
    return None


def _span(ns: int) -> str:
    seconds = ns / 1e9
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.4g} {unit}"
    return f"{seconds:.3g} s"


class ClockSkew:
    """The live skew of each gateway's clock (its state's time minus the ingest's)."""

    def __init__(self) -> None:
        self.skew_s: dict[tuple[str, str], float] = {}

    def observe(self, state: GatewayState, retained: bool, now_ns: int
                ) -> tuple[str, str] | None:
        """Note the state's skew; returns the gateway forgotten to make room (MAX_GATEWAYS),
        whose gauge goes too."""
        if retained:  # a retained state is as old as it is: no measure of the clock
            return None
        key = (state.site, state.gateway)
        skew = state.ts - now_ns
        forgotten = None
        if key not in self.skew_s and len(self.skew_s) >= MAX_GATEWAYS:
            forgotten = next(iter(self.skew_s))
            del self.skew_s[forgotten]
        self.skew_s[key] = skew / 1e9
        if abs(skew) > SKEW_NS and implausible(state, now_ns) is None:  # (else: Restamper)
            log.warning("event=gateway_clock_skew site=%s gateway=%s skew_s=%.1f (its clock is "
                        "%s the ingest's: its points and alarms are stored at its times)",
                        state.site, state.gateway, skew / 1e9,
                        "ahead of" if skew > 0 else "behind")
        return forgotten


FirstReceived = Callable[[SeenKey, int, bool], int | None]
"""(key, now, remember) → when the message of `key` was first received (`now` the first time,
remembered if `remember`; None if not remembered and not to be): gateway.ingest.dedup."""


class Restamper:
    """Alarm events and live states whose time is implausible: at their first receive time
    (the order of an alarm's events: gateway.ingest.alarmorder)."""

    def __init__(self, first_received: FirstReceived) -> None:
        self._first_received = first_received

    def __call__(self, message: Message, key: SeenKey | None, retained: bool,
                 now_ns: int) -> tuple[AlarmEventMessage | GatewayState, int] | None:
        """(`message` stamped with the time the ingest first received it, the gateway's own
        time), or None if it is to be dead-lettered: telemetry, or a retained state delivered
        on subscribing and never received live."""
        if key is None or not isinstance(message, AlarmEventMessage | GatewayState):
            return None
        received = self._first_received(key, now_ns, not retained)
        if received is None:
            return None
        what = (f"alarm_event seq={message.seq}" if isinstance(message, AlarmEventMessage)
                else f"state status={message.status}")
        log.warning("event=gateway_clock_restamped site=%s gateway=%s %s gateway_ts=%d (%s) "
                    "written_at=%s (the gateway's clock is not set, ahead, or restored to an "
                    "old time — or this is a backlog older than max_event_age, or than "
                    "telemetry_retention if stamped by a synchronised clock: written at the "
                    "ingest's receive time, marked clock_suspect, its own time in gateway_ts; "
                    "its telemetry so stamped is dead-lettered)",
                    message.site, message.gateway, what, message.ts, _iso(message.ts),
                    _iso(received))
        return message.model_copy(update={"ts": received}), message.ts
