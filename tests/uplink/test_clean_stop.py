"""A gateway stopped cleanly (SIGTERM: systemd's stop) says so on the broker. The central
audit: the daemon cancelled the uplink's task before closing it, the task's ending dropped
the session, and the close found nobody to say goodbye through — the broker sent only the last
will, stamped when the gateway *connected*, so central monitoring kept the gateway online."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.ops.conftest import Live, start_live
from tests.uplink.conftest import Broker, Subscriber
from tests.uplink.test_publisher import until


def offline_states(sub: Subscriber, gateway: str, since_ns: int) -> list[dict[str, Any]]:
    states = [json.loads(m.payload) for m in sub.snapshot()]
    return [s for s in states if s.get("status") == "offline" and s.get("gateway") == gateway
            and int(s["ts"]) >= since_ns]


async def stop_cleanly(live: Live, sub: Subscriber) -> None:
    gw = live.gateway
    uplink = gw.uplink
    assert uplink is not None
    await until(lambda: uplink.status().connected, 15, "uplink connected")
    stopped_ns = time.time_ns()
    gw.request_stop()
    name = gw.loaded.config.gateway.id
    await until(lambda: bool(offline_states(sub, name, stopped_ns)), 10,
                "an offline state at the stop")
    assert len(offline_states(sub, name, stopped_ns)) == 1


@pytest.mark.slow
async def test_a_clean_stop_publishes_offline_at_the_stop(
        tmp_path: Path, broker: Broker, subscribers: list[Subscriber]) -> None:
    sub = Subscriber(broker.port, "roomwarden/+/+/state")
    subscribers.append(sub)
    async for live in start_live(tmp_path, uplink_port=broker.port):
        await stop_cleanly(live, sub)
