"""Gateway clocks as the ingest sees them: times no database should get, and clocks that run off.

Everything a gateway sends is stamped by its own clock. A Raspberry Pi has no RTC: until NTP
sets it, its clock may say 1970 (the clock audit: a critical hydrogen alarm and its readings
stamped 1970-01-02 were acknowledged by the ingest and dropped by VictoriaMetrics as
`small_timestamp`, with no error anywhere). So:

* a message stamped before `FLOOR_NS` (2020-01-01), or more than `AHEAD_NS` (a day) ahead of
  the ingest's clock, is dead-lettered (kind `clock`) with the time it carries and why — kept
  in the dead-letter log, never written as if it were true, and counted;
* a gateway whose live state (a non-retained `state` message, sent as it is made) is more than
  `SKEW_NS` (a minute) off the ingest's clock is logged (`event=gateway_clock_skew`, at most a
  line a minute per gateway) and shown as `roomwarden_ingest_gateway_clock_skew_seconds`: its
  points and alarms are stored at its times, so the dashboards show them that much early or
  late.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from gateway.clocksync import SET_FLOOR_NS
from gateway.contract.wire import AlarmEventMessage, GatewayState, Message, TelemetryBatch
from gateway.ops.connections import RateLimitFilter

log = logging.getLogger("roomwarden.ingest")


def _per_gateway(record: logging.LogRecord) -> str:
    """What makes two lines alike: their event and (site, gateway), the first two args."""
    args = record.args if isinstance(record.args, tuple) else ()
    return f"{str(record.msg)[:30]}{args[:2]!r}"


for _event in ("event=gateway_clock_skew", "event=gateway_id_conflict"):
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

    def observe(self, state: GatewayState, retained: bool, now_ns: int) -> None:
        if retained:  # a retained state is as old as it is: no measure of the clock
            return
        key = (state.site, state.gateway)
        skew = state.ts - now_ns
        if key not in self.skew_s and len(self.skew_s) >= MAX_GATEWAYS:
            self.skew_s.pop(next(iter(self.skew_s)))
        self.skew_s[key] = skew / 1e9
        if abs(skew) > SKEW_NS:
            log.warning("event=gateway_clock_skew site=%s gateway=%s skew_s=%.1f (its clock is "
                        "%s the ingest's: its points and alarms are stored at its times)",
                        state.site, state.gateway, skew / 1e9,
                        "ahead of" if skew > 0 else "behind")
