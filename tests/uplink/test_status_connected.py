"""`Uplink.status()` says "connected" only once the publisher has handled the connection's
start: counted it and handed its births to the writer. Between the CONNACK (which completes
the session's future) and the publisher's coroutine resuming lies one turn of the event loop;
a status read in it said connected with `connects` 0 and the births not yet handed over, and
the SUBACK handled in that turn showed a refusal on an uncounted connection (two flaky tests
in CI). Read at every loop turn here, against a real mosquitto, through two connections."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.uplink.status import UplinkStatus
from tests.uplink.conftest import Broker
from tests.uplink.test_publisher import running, settings, until


async def test_no_status_says_connected_before_the_connection_is_counted(
        broker: Broker, tmp_path: Path) -> None:
    seen: list[UplinkStatus] = []
    stop = asyncio.Event()

    async with running(settings(broker.port), tmp_path / "state") as r:
        up = r.uplink

        async def every_turn() -> None:
            while not stop.is_set():
                seen.append(up.status())
                await asyncio.sleep(0)

        probe = asyncio.create_task(every_turn())
        try:
            await until(lambda: up.status().connects == 1, what="the first connection")
            broker.restart()
            await until(lambda: up.status().connects == 2 and up.status().connected,
                        what="the second connection")
        finally:
            stop.set()
            await probe

    assert any(s.connected for s in seen), "no status read while connected"
    early: list[int] = []
    counted_when_down = 0  # each connection's status must count it (the first: 0 before it)
    for status in seen:
        if not status.connected:
            counted_when_down = status.connects
        elif status.connects <= counted_when_down:
            early.append(status.connects)
    assert early == [], f"{len(early)} statuses said connected before the connection counted"
    assert next(s for s in seen if s.connected).connects == 1
    assert any(s.connected and s.connects == 2 for s in seen)
