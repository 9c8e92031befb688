"""A damaged outbox against real processes' parts: a real gateway (simulated site on loopback,
real mosquitto) starts, polls and alarms with a damaged `uplink/outbox.sqlite`; an uplink whose
outbox is damaged while it runs keeps its writer and publishes later alarm events; /healthz
says the uplink is degraded, and why, while commits fail (the storage audit's D1 and D2)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import aiohttp
import pytest

from gateway.clock import SystemClock
from gateway.contract.wire import MessageKind
from gateway.sim.signals import Constant
from gateway.uplink.outbox import Outbox
from gateway.uplink.publisher import Uplink
from tests.ops.conftest import Live, start_live
from tests.uplink.conftest import Broker, Subscriber
from tests.uplink.test_outbox_damage import aside, big_backlog, filled, scribble, scribble_pages
from tests.uplink.test_publisher import GW, POINTS, PREFIX, SITE, event, settings, until


async def healthz(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as client, client.get(url + "/healthz") as r:
        return r.status, await r.json()


def alarm_seqs(sub: Subscriber, prefix: str) -> list[int]:
    return [json.loads(m.payload)["seq"] for m in sub.snapshot()
            if m.topic == prefix + "alarms"]


@pytest.mark.slow
async def test_a_gateway_starts_polls_and_alarms_with_a_damaged_outbox(
        tmp_path: Path, broker: Broker, subscribers: list[Subscriber],
        caplog: pytest.LogCaptureFixture) -> None:
    """The audit's corrupt_start.py: before, `Gateway(...)` raised OutboxError (the process
    exited 1 and systemd restarted it for ever)."""
    path = tmp_path / "state" / "uplink" / "outbox.sqlite"
    filled(path, n=400)
    scribble(path)
    sub = Subscriber(broker.port, "roomwarden/#")
    subscribers.append(sub)
    caplog.set_level(logging.ERROR, "roomwarden.uplink")
    async for live in start_live(tmp_path, uplink_port=broker.port):  # polls: devices online
        await starts_polls_and_alarms(live, path, sub, caplog)


async def starts_polls_and_alarms(live: Live, path: Path, sub: Subscriber,
                                  caplog: pytest.LogCaptureFixture) -> None:
    gw = live.gateway
    uplink = gw.uplink
    assert uplink is not None and uplink.outbox.recoveries == 1
    assert len(aside(path)) == 1
    assert any("event=outbox_corrupt" in r.getMessage() for r in caplog.records)
    await until(lambda: uplink.status().connected, 15, "uplink connected")
    status, body = await healthz(live.url)
    assert status == 200 and body["service"] == "ok", body
    detail = body["checks"]["uplink"]["detail"]  # type: ignore[index]
    assert "damaged file replaced" in detail

    live.site.set_signal("smoke-1.alarm", Constant(value=True))
    live.site.set_signal("smoke-2.alarm", Constant(value=True))
    await until(lambda: any(a.key.rule == "fire.smoke_coincidence"
                            for a in gw.core.alarms.active()), 20, "the fire alarm")
    prefix = f"roomwarden/{gw.loaded.config.gateway.site}/{gw.loaded.config.gateway.id}/"
    journal = [e.seq for e in gw.core.journal.events_since(0)]
    assert journal
    await until(lambda: set(journal) <= set(alarm_seqs(sub, prefix)), 15,
                "the alarm events on the broker")


async def test_the_writer_survives_an_outbox_damaged_while_running(
        tmp_path: Path, broker: Broker, subscribers: list[Subscriber],
        caplog: pytest.LogCaptureFixture) -> None:
    """The audit's corrupt_backlog.py: the backlog's oldest pages go bad under a running
    uplink and the next session reads them. Before, the writer thread died
    (`uplink_writer_failed`) and no later alarm event reached the broker."""
    state = tmp_path / "state"
    path = state / "uplink" / "outbox.sqlite"
    path.parent.mkdir(parents=True)
    big_backlog(path).close()  # 8 MiB: more than SQLite's page cache
    broker.stop()
    caplog.set_level(logging.WARNING, "roomwarden.uplink")
    uplink = Uplink(settings(broker.port), SITE, GW, state, SystemClock(), POINTS)
    task = asyncio.create_task(uplink.run())
    try:
        scribble_pages(path, 8 * 4096, path.stat().st_size // 2)
        broker.start()  # the new session hands the backlog out from its start: the damage
        sub = Subscriber(broker.port, PREFIX + "#")
        subscribers.append(sub)
        await until(lambda: uplink.status().connected, 15, "connected")
        thread = uplink.committer._thread
        assert thread is not None
        await until(lambda: len(aside(path)) == 1 or not thread.is_alive(), 30,
                    "the damage found")
        uplink.on_alarm_events([event(101), event(102)])
        await until(lambda: {101, 102} <= set(alarm_seqs(sub, PREFIX)), 15,
                    "the later alarm events on the broker")
        assert thread.is_alive() and uplink.outbox.recoveries == 1
        # the session's snapshots were in the lost file: queued again (retained state)
        await until(lambda: any(m.topic == PREFIX + "state" and b'"online"' in m.payload
                                for m in sub.snapshot()), 15, "the state again")
        await until(lambda: uplink.status().outbox.depth == 0, 15, "delivered")
        assert uplink.committer.faults.error is None
        assert uplink.status().dropped[MessageKind.TELEMETRY] > 0  # the lost backlog
        messages = [r.getMessage() for r in caplog.records]
        assert not any("uplink_writer_failed" in m for m in messages)
    finally:
        await uplink.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    reopened = Outbox(path, clock=SystemClock())
    assert reopened.recoveries == 0 and reopened.depth(MessageKind.ALARM) == 0
    reopened.close()


@pytest.mark.slow
async def test_healthz_says_the_uplink_is_degraded_while_outbox_commits_fail(
        tmp_path: Path, broker: Broker) -> None:
    """The outbox's file refuses writes (as after the SD card's filesystem was remounted
    read-only on errors): the broker is reachable, but nothing can be stored — /healthz says
    so, and comes back to ok when writing works again."""
    async for live in start_live(tmp_path, uplink_port=broker.port):
        await degraded_while_commits_fail(live)


async def degraded_while_commits_fail(live: Live) -> None:
    uplink = live.gateway.uplink
    assert uplink is not None
    await until(lambda: uplink.status().connected, 15, "uplink connected")
    await uplink_check(live.url, "ok")

    with uplink.outbox._lock:
        uplink.outbox._db.execute("PRAGMA query_only=1")  # SQLITE_READONLY from now on
    check = await uplink_check(live.url, "degraded")
    assert "outbox commit failing" in check["detail"] and "readonly" in check["detail"]
    assert "; connected;" in check["detail"], check

    with uplink.outbox._lock:
        uplink.outbox._db.execute("PRAGMA query_only=0")
    await uplink_check(live.url, "ok", seconds=40)  # the next retry (back-off ≤ 30 s)


async def uplink_check(url: str, status: str, seconds: float = 15) -> dict[str, str]:
    """/healthz's uplink check once it has `status` (its answers are always 200 here)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        code, body = await healthz(url)
        check = body["checks"]["uplink"]  # type: ignore[index]
        assert code == 200, body
        if check["status"] == status:
            return dict(check)
        assert asyncio.get_running_loop().time() < deadline, f"uplink not {status}: {check}"
        await asyncio.sleep(0.1)
