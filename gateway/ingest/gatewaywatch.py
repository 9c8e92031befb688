"""What a gateway's live states tell the ingest about the gateway itself: how far its clock is
off (gateway.ingest.timecheck.ClockSkew), and whether two gateways publish under one id.

Two gateways flashed with the same config (a copied file) publish as one `site/gateway`: the
broker throws each off when the other connects (the same client id), and their readings,
alarms and states mix in one series — the central audit saw a room's 22.8 °C and another's
40 °C alternate in one temperature series, and an alarm of the copy stay active under the
real gateway for ever, with nothing saying why. Every state names its gateway process's
start (`boot`): a restart changes it once; a boot seen before coming back means two
processes. That is logged (`event=gateway_id_conflict`, at most a line a minute per gateway)
and counted (`roomwarden_ingest_gateway_id_conflicts_total{site, gateway}`).
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque

from gateway.contract.wire import GatewayState
from gateway.ingest.metrics import IngestMetrics
from gateway.ingest.timecheck import ClockSkew

log = logging.getLogger("roomwarden.ingest")

BOOTS_KEPT = 4
"""Earlier boots remembered per gateway."""
MAX_GATEWAYS = 10_000


class GatewayWatch:
    def __init__(self, metrics: IngestMetrics) -> None:
        self.metrics = metrics
        self.skew = ClockSkew()
        self._boots: dict[tuple[str, str], deque[int]] = {}
        """(site, gateway) → its boots, the latest last."""
        self.conflicts = 0

    def observe(self, state: GatewayState, retained: bool, now_ns: int) -> None:
        forgotten = self.skew.observe(state, retained, now_ns)
        if forgotten is not None:  # a series per gateway ever heard would grow without end
            with contextlib.suppress(KeyError):
                self.metrics.clock_skew.remove(*forgotten)
        key = (state.site, state.gateway)
        skew = self.skew.skew_s.get(key)
        if skew is not None and not retained:
            self.metrics.clock_skew.labels(site=state.site, gateway=state.gateway).set(skew)
        if state.boot is not None:
            self._boot(key, state.boot)

    def _boot(self, key: tuple[str, str], boot: int) -> None:
        boots = self._boots.get(key)
        if boots is None:
            if len(self._boots) >= MAX_GATEWAYS:
                self._boots.pop(next(iter(self._boots)))
            self._boots[key] = deque([boot], maxlen=BOOTS_KEPT)
            return
        if boots[-1] == boot:
            return
        earlier = boot in boots
        if earlier:
            boots.remove(boot)
        boots.append(boot)
        if not earlier:
            return  # a restart
        self.conflicts += 1
        self.metrics.id_conflicts.labels(site=key[0], gateway=key[1]).inc()
        # a line a minute per gateway: the RateLimitFilter gateway.ingest.timecheck installs
        log.error("event=gateway_id_conflict site=%s gateway=%s boots=%s (two gateway processes "
                  "publish as %s/%s: their readings, alarms and states mix; give each its own "
                  "gateway.id)", key[0], key[1], ",".join(map(str, boots)), key[0], key[1])
