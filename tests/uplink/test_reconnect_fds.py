"""A reconnect leaves nothing open behind it: paho's wake-up socket pair of each connection's
network thread stayed open after `loop_stop()`, and the session's callbacks kept the client
alive until a full garbage collection — two descriptors a reconnect (the churn soak: a
flapping link would reach the usual 1,024-descriptor limit after ~500 reconnects, taking the
panel, SQLite and Modbus TCP down with it). Counted with the cyclic collector off, as a quiet
gateway (young-generation threshold 10,000) can go long without a full collection."""

from __future__ import annotations

import gc
import os
from pathlib import Path

from tests.fixtures.services import Broker
from tests.uplink.test_publisher import running, settings, until


def descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_ten_reconnects_leave_no_descriptor_open(broker: Broker, tmp_path: Path) -> None:
    s = settings(broker.port, reconnect_min="100ms", reconnect_max="200ms")
    gc.collect()
    gc.disable()
    try:
        async with running(s, tmp_path / "state") as r:
            up = r.uplink
            await until(lambda: up.status().connected, what="connect")
            before = descriptors()
            for n in range(10):
                session = up._session
                assert session is not None
                session.drop()  # the link goes away under the gateway
                connects = n + 2
                await until(lambda c=connects: up.status().connects == c  # type: ignore[misc]
                            and up.status().connected, what=f"reconnect {n + 1}")
            assert descriptors() <= before + 1  # (one may be opening meanwhile)
    finally:
        gc.enable()
