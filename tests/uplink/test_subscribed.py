"""`UplinkStatus.subscribed`: connected *and* subscribed (the broker's SUBACK) — from then on
commands, config sets and the ingest's acknowledgements reach the gateway; a command sent
between the CONNACK and the SUBACK is lost (a clean session). Tests that sent a command as soon
as `connected` raced the SUBACK (a command lost about one run in fifteen). Real Mosquitto,
MQTT 3.1.1 and 5."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.clock import SystemClock
from gateway.uplink.publisher import Uplink
from tests.fixtures.services import Broker
from tests.uplink.test_publisher import GW, POINTS, SITE, settings, until

PROTOCOLS = pytest.mark.parametrize("protocol", ["3.1.1", "5"])


@PROTOCOLS
async def test_subscribed_once_the_broker_granted_the_subscriptions(
        protocol: str, broker: Broker, tmp_path: Path) -> None:
    up = Uplink(settings(broker.port, protocol=protocol), SITE, GW, tmp_path / "state",
                SystemClock(), POINTS)
    assert not up.status().subscribed
    task = asyncio.create_task(up.run())
    try:
        await until(lambda: up.status().subscribed, what="subscribed")
        assert up.status().connected
        broker.stop()
        await until(lambda: not up.status().connected, what="outage noticed")
        assert not up.status().subscribed
        broker.start()
        await until(lambda: up.status().subscribed, what="subscribed again")
    finally:
        await up.close()
        await asyncio.gather(task, return_exceptions=True)

