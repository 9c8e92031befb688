"""Gateway clocks as the ingest sees them: times no database should get, and clocks that run off.

Everything a gateway sends is stamped by its own clock. A Raspberry Pi has no RTC: until NTP
sets it, its clock may say 1970 (the clock audit: a critical hydrogen alarm and its readings
stamped 1970-01-02 were acknowledged by the ingest and dropped by VictoriaMetrics as
`small_timestamp`, with no error anywhere). A message stamped before `FLOOR_NS` (2020-01-01),
or more than `AHEAD_NS` (a day) ahead of the ingest's clock, is never written at that time
(`implausible`). Then:

* telemetry is dead-lettered (kind `clock`) with the time it carries and why — kept in the
  dead-letter log, never written as if it were true, and counted: re-stamping thousands of
  samples would lie about when each was measured;
* an alarm event or a live gateway state is written at the time the ingest first received it
  (`Restamper`; wall clock, ns), marked `clock_suspect=true` with the gateway's own time kept
  in `gateway_ts` (gateway.ingest.schema.restamped), logged (`event=gateway_clock_restamped`,
  at most a line a minute per gateway) and counted
  (`roomwarden_ingest_messages_restamped_total{reason="clock"}`): central monitoring must see
  a live alarm (a critical alarm of a gateway whose clock is unset was in no Active alarms
  table) and that the gateway is alive. The first receive time is remembered by the message's
  duplicate key (gateway.ingest.dedup, durably, before the write), so a redelivery — QoS 1, a
  gateway's replay after a reconnect — is recognised as a duplicate, and would be written at
  that same time if at all, never as a second row at another. A retained state delivered on
  subscribing, never received live, is as old as it is (when it was made is unknown): it is
  dead-lettered like telemetry;
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

from gateway.clocksync import SET_FLOOR_NS
from gateway.contract.wire import AlarmEventMessage, GatewayState, Message, TelemetryBatch
from gateway.ingest.dedup import SeenKey
from gateway.ops.connections import RateLimitFilter

log = logging.getLogger("roomwarden.ingest")


def _per_gateway(record: logging.LogRecord) -> str:
    """What makes two lines alike: their event and (site, gateway), the first two args."""
    args = record.args if isinstance(record.args, tuple) else ()
    return f"{str(record.msg)[:30]}{args[:2]!r}"


for _event in ("event=gateway_clock_skew", "event=gateway_clock_restamped",
               "event=alarm_event_reordered", "event=gateway_id_conflict"):
    # a line a minute per gateway (gateway.ingest.gatewaywatch logs the second)
    log.addFilter(RateLimitFilter(prefix=_event, kind=_per_gateway))

FLOOR_NS = SET_FLOOR_NS
"""2020-01-01T00:00:00Z: no RoomWarden message is older; a time before it is an unset clock."""
AHEAD_NS = 86_400 * 10**9
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


def implausible(message: Message, now_ns: int) -> str | None:
    """Why the database must not get `message` as it stands (None: it may)."""
    times = stamped(message)
    if times is None:
        return None
    earliest, latest = times
    if earliest < FLOOR_NS:
        return (f"stamped {_iso(earliest)}, before 2020: the gateway's clock was not set "
                "(a Pi without an RTC before NTP); not written")
    if latest > now_ns + AHEAD_NS:
        return (f"stamped {_iso(latest)}, more than a day ahead of the ingest's clock "
                f"({_iso(now_ns)}): a gateway clock set wrong; not written")
    return None


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


MAX_SERIES = 100_000
"""Alarm series whose newest event `Restamper.in_order` remembers (past it: starts again)."""
AFTER_NS = 1_000_000
"""An event out of its alarm's order is placed this long (1 ms) after the newest."""


class Restamper:
    """Alarm events and live states whose time is implausible: at their first receive time.
    And (`in_order`) an alarm event stamped before an earlier event of its alarm."""

    def __init__(self, first_received: FirstReceived) -> None:
        self._first_received = first_received
        self._newest: dict[tuple[str, str, str, str], tuple[int, int]] = {}
        """(site, gateway, rule, subject) → (seq, ts) of its newest event written."""

    def in_order(self, message: Message, gateway_ts: int | None
                 ) -> tuple[Message, int | None]:
        """`message` and its `gateway_ts`, an alarm event placed 1 ms after the newest event
        of its alarm if it has a higher `seq` (the journal's order) but no later time: the
        gateway's clock stepped back between the two (NTP, a Pi's RTC-less boot). Written at
        its own time, a clear would sort before the raise and the dashboards' Active alarms
        (the latest event of each alarm) would show the alarm active until its next event
        (the central audit). Marked like a re-stamped event (its own time in `gateway_ts`).
        Known after the ingest's start only."""
        if not isinstance(message, AlarmEventMessage):
            return message, gateway_ts
        key = (message.site, message.gateway, message.rule, message.subject)
        last = self._newest.get(key)
        if last is not None and message.seq > last[0] and message.ts <= last[1]:
            placed = last[1] + AFTER_NS
            log.warning("event=alarm_event_reordered site=%s gateway=%s rule=%s subject=%s "
                        "seq=%d gateway_ts=%d placed=%d (its time is not after an earlier "
                        "event of its alarm: the gateway's clock stepped back)", message.site,
                        message.gateway, message.rule, message.subject, message.seq,
                        message.ts, placed)
            gateway_ts = message.ts if gateway_ts is None else gateway_ts
            message = message.model_copy(update={"ts": placed})
        if last is None or message.seq > last[0]:
            if last is None and len(self._newest) >= MAX_SERIES:
                self._newest.clear()
            self._newest[key] = (message.seq, message.ts)
        return message, gateway_ts

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
                    "written_at=%s (the gateway's clock is not set or wrong: written at the "
                    "ingest's receive time, marked clock_suspect, its own time in gateway_ts; "
                    "its telemetry is dead-lettered until its clock is right)",
                    message.site, message.gateway, what, message.ts, _iso(message.ts),
                    _iso(received))
        return message.model_copy(update={"ts": received}), message.ts
