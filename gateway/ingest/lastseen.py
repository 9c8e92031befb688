"""When a gateway was last heard from, so that its last will says when it went silent.

A gateway composes its last will (a retained `offline` GatewayState) when it connects: the
broker publishes it when the connection dies — a SIGKILL, a power cut, a cut cable — with the
time of that *connection* in it. Written at that time, it landed before every state the
gateway published since, and the dashboards (the latest `online` by time) kept a dead gateway
online for ever (the central audit). The ingest places such an offline state just after the
newest time it has seen from that gateway (any message: states, telemetry, alarm events), on
the gateway's own clock like everything else it sent; an offline state newer than that (a
clean stop's goodbye) keeps its own time. The message is otherwise unchanged, and its duplicate
key (gateway.ingest.dedup) stays the will's own, so a retained will delivered again at every
reconnect of the ingest is still written once.

A time more than `AHEAD_NS` (5 minutes, `gateway.ingest.timecheck`'s: nothing further ahead is
written at its own time) ahead of the ingest's clock is not noted as the newest: one telemetry
batch from a gateway whose clock had jumped 2 hours ahead (within the day the ingest let
through then) placed its will 2 hours ahead, so the gateway stayed "stopped" on the fleet
dashboard for those hours after it came back (the central audit).

After an ingest restart nothing is known until the gateway is heard again: a will delivered
first then keeps its time; the dashboards' freshness (gateway.dashboards) still shows that
gateway offline once its states stop."""

from __future__ import annotations

import logging
import time

from gateway.contract.wire import AlarmEventMessage, GatewayState, Message, TelemetryBatch
from gateway.ingest.timecheck import AHEAD_NS

log = logging.getLogger("roomwarden.ingest")

AFTER_NS = 1_000_000
"""An offline state is placed this long (1 ms) after the newest time seen."""
MAX_GATEWAYS = 100_000
"""Gateways remembered (a bound on what a flood of made-up names can take); past it the map
starts again, which only loses the placement for gateways not heard since."""


class LastSeen:
    def __init__(self) -> None:
        self._newest: dict[tuple[str, str], int] = {}
        self.placed = 0
        """Offline states moved to just after their gateway's newest time (since start)."""

    def place(self, message: Message, now_ns: int | None = None) -> Message:
        """`message` as it should be written: an offline state older than its gateway's
        newest message is moved to just after it; every message's time is noted unless it is
        more than AHEAD_NS ahead of `now_ns` (the ingest's clock; None: read it)."""
        if not isinstance(message, GatewayState | AlarmEventMessage | TelemetryBatch):
            return message
        when = message.t0 if isinstance(message, TelemetryBatch) else message.ts
        key = (message.site, message.gateway)
        newest = self._newest.get(key)
        if isinstance(message, GatewayState) and message.status == "offline" \
                and newest is not None and when <= newest:
            self.placed += 1
            log.info("event=offline_state_placed site=%s gateway=%s ts=%d placed=%d (a last "
                     "will: placed after the newest message seen from the gateway)",
                     message.site, message.gateway, when, newest + AFTER_NS)
            return message.model_copy(update={"ts": newest + AFTER_NS})
        if (newest is None or when > newest) \
                and when <= (time.time_ns() if now_ns is None else now_ns) + AHEAD_NS:
            if newest is None and len(self._newest) >= MAX_GATEWAYS:
                self._newest.clear()
            self._newest[key] = when
        return message

