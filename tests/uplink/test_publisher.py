"""The MQTT uplink against a real mosquitto: contract format, birth/last will, outage and
replay (live alarms first), and at-least-once across a crash."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.alarms.events import AlarmEvent, EventKind
from gateway.alarms.lifecycle import AlarmState
from gateway.alarms.types import Severity
from gateway.clock import SystemClock
from gateway.config.section import validator
from gateway.contract.wire import (
    AlarmEventMessage,
    GatewayState,
    PointCatalog,
    PointMeta,
    TelemetryBatch,
    decode,
)
from gateway.field.sample import Quality, Sample
from gateway.uplink.publisher import Uplink
from gateway.uplink.records import event_of
from gateway.uplink.settings import UplinkSettings
from tests.uplink.conftest import Broker, Received, Subscriber

SITE, GW = "site-1", "gw-1"
PREFIX = f"roomwarden/{SITE}/{GW}/"
POINTS = {
    "th-1.temperature": PointMeta(device="th-1", room="r1", quantity="temperature", unit="°C"),
    "th-1.humidity": PointMeta(device="th-1", room="r1", quantity="relative_humidity",
                               unit="%"),
}


def settings(port: int, **kw: Any) -> UplinkSettings:
    """PUBACK-only delivery unless `delivery` is given: these tests have no ingest (the
    end-to-end acknowledgement is tested in tests/uplink/test_delivery.py and tests/faults)."""
    base: dict[str, Any] = {"broker": "127.0.0.1", "port": port, "reconnect_min": "100ms",
                            "reconnect_max": "500ms", "outbox": {"commit_interval": "200ms"},
                            "delivery": "puback"}
    base.update(kw)
    return validator(UplinkSettings).validate_python(base)


def samples(i: int) -> list[Sample]:
    ts = time.time_ns()
    return [Sample("th-1.temperature", 20.0 + i, ts, Quality.GOOD),
            Sample("th-1.humidity", 40.0 + i, ts + 1000, Quality.GOOD)]


def event(seq: int) -> AlarmEvent:
    return AlarmEvent(seq=seq, ts=time.time_ns(), kind=EventKind.ALARM, rule="high_temp",
                      subject="th-1.temperature", state=AlarmState.ACTIVE_UNACKNOWLEDGED,
                      previous_state=AlarmState.NORMAL, value=45.5, severity=Severity.MAJOR,
                      actor="system", note=None, first_out=True, room="r1",
                      title="High temperature")


async def until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.02)


def of(channel: str) -> Callable[[Received], bool]:
    return lambda m: m.topic == PREFIX + channel


def seqs(messages: list[Received]) -> list[int]:
    out = []
    for m in messages:
        msg = decode(m.topic, m.payload)
        assert isinstance(msg, TelemetryBatch | AlarmEventMessage)
        out.append(msg.seq)
    return out


class Running:
    def __init__(self, uplink: Uplink) -> None:
        self.uplink = uplink
        self.task = asyncio.create_task(uplink.run())

    async def kill(self) -> None:
        """SIGKILL-style: cancel run() without close(); nothing is flushed."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@contextlib.asynccontextmanager
async def running(s: UplinkSettings, state_dir: Path) -> AsyncIterator[Running]:
    uplink = Uplink(s, SITE, GW, state_dir, SystemClock(), POINTS)
    r = Running(uplink)
    try:
        yield r
    finally:
        await uplink.close()  # publishes offline, commits and closes the outbox


PROTOCOLS = pytest.mark.parametrize("protocol", ["3.1.1", "5"])


@PROTOCOLS
async def test_samples_and_alarm_events_in_contract_format(
        protocol: str, broker: Broker, subscribers: list[Subscriber], tmp_path: Path) -> None:
    sub = Subscriber(broker.port)
    subscribers.append(sub)
    async with running(settings(broker.port, protocol=protocol), tmp_path / "state") as r:
        up = r.uplink
        await until(lambda: up.status().connected, what="connect")
        for i in range(3):
            up.on_samples(samples(i))
        up.on_samples(samples(2))  # unchanged: filtered out by exception
        sent = event(7)
        up.on_alarm_events([sent])
        await until(lambda: len(sub.snapshot(of("telemetry"))) == 3
                    and len(sub.snapshot(of("alarms"))) == 1, what="messages")
        await until(lambda: up.status().outbox.depth == 0, what="all acknowledged")
        status = up.status()
        assert status.published >= 6 and status.rejected == 0 and status.queued == 0
        assert status.latency_count == status.published and status.latency_last_s is not None

        batches = [decode(m.topic, m.payload) for m in sub.snapshot(of("telemetry"))]
        assert all(isinstance(b, TelemetryBatch) for b in batches)
        assert [b.seq for b in batches if isinstance(b, TelemetryBatch)] == [1, 2, 3]
        for i, b in enumerate(batches):
            assert isinstance(b, TelemetryBatch)
            got = b.to_samples()
            want = samples(i)
            assert [(s.point, s.value, s.quality) for s in got] == \
                [(s.point, s.value, s.quality) for s in want]
            assert got[1].ts - got[0].ts == 1000
        alarm = decode(*_tp(sub.snapshot(of("alarms"))[0]))
        assert isinstance(alarm, AlarmEventMessage)
        assert event_of(alarm) == sent
        assert (alarm.seq, alarm.rule, alarm.value, alarm.severity) == \
            (7, "high_temp", 45.5, Severity.MAJOR)

        birth = decode(*_tp(sub.snapshot(of("state"))[0]))
        assert isinstance(birth, GatewayState) and birth.status == "online"
        catalog = decode(*_tp(sub.snapshot(of("meta"))[0]))
        assert isinstance(catalog, PointCatalog) and set(catalog.points) == set(POINTS)
        assert all(isinstance(b, TelemetryBatch) and b.catalog == catalog.catalog
                   for b in batches)

        up.set_active_alarms([], seq=7)
        await until(lambda: len(sub.snapshot(of("alarms/active"))) == 1, what="snapshot")
    # close(): a clean offline state, retained
    late = Subscriber(broker.port, PREFIX + "state")
    subscribers.append(late)
    await until(lambda: len(late.snapshot()) == 1, what="retained state")
    state = decode(*_tp(late.snapshot()[0]))
    assert isinstance(state, GatewayState) and state.status == "offline"
    assert late.snapshot()[0].retain


def _tp(m: Received) -> tuple[str, bytes]:
    return m.topic, m.payload


@PROTOCOLS
async def test_lost_connection_shows_retained_last_will_then_reconnects(
        protocol: str, broker: Broker, subscribers: list[Subscriber], tmp_path: Path) -> None:
    s = settings(broker.port, reconnect_min="2s", reconnect_max="2s", protocol=protocol)
    async with running(s, tmp_path / "state") as r:
        up = r.uplink
        await until(lambda: up.status().connected, what="connect")
        # the birth is at the broker before we subscribe: it arrives as a retained message
        await until(lambda: up.status().published >= 2, what="birth and catalog acknowledged")
        first = Subscriber(broker.port, PREFIX + "state")
        subscribers.append(first)
        await until(lambda: len(first.snapshot()) == 1, what="birth")
        assert first.snapshot()[0].retain
        birth = decode(*_tp(first.snapshot()[0]))
        assert isinstance(birth, GatewayState) and birth.status == "online"

        session = up._session
        assert session is not None
        session.drop()  # the network goes away under the gateway: no DISCONNECT
        await until(lambda: not up.status().connected, what="disconnect noticed")
        late = Subscriber(broker.port, PREFIX + "state")
        subscribers.append(late)
        await until(lambda: len(late.snapshot()) == 1, what="retained will")
        will = decode(*_tp(late.snapshot()[0]))
        assert late.snapshot()[0].retain
        assert isinstance(will, GatewayState) and will.status == "offline"

        await until(lambda: up.status().connected, timeout=10, what="reconnect")
        await until(lambda: len(late.snapshot()) == 2, what="new birth")
        again = decode(*_tp(late.snapshot()[1]))
        assert isinstance(again, GatewayState) and again.status == "online"
        assert up.status().connects == 2


async def test_outage_backlog_replays_once_in_order_and_live_alarms_go_first(
        persistent_broker: Broker, subscribers: list[Subscriber], tmp_path: Path) -> None:
    broker = persistent_broker
    sub = Subscriber(broker.port, PREFIX + "#", client_id="test-durable",
                     clean_session=False)
    subscribers.append(sub)
    n = 100
    s = settings(broker.port, replay={"messages_per_s": 25, "bytes_per_s": 1_000_000})
    async with running(s, tmp_path / "state") as r:
        up = r.uplink
        await until(lambda: up.status().connected, what="connect")
        await until(lambda: len(sub.snapshot(of("state"))) >= 1, what="birth")
        await until(lambda: up.status().outbox.depth == 0, what="quiet")

        broker.stop()
        await until(lambda: not up.status().connected, what="outage noticed")
        for i in range(n):
            up.on_samples(samples(i))
            if i % 40 == 0:
                up.on_alarm_events([event(1 + i // 40)])  # seq 1, 2, 3
        await until(lambda: up.status().queued == 0 and up.status().outbox.depth >= n + 3,
                    what="backlog committed")
        assert up.status().outbox.oldest_age_s is not None

        broker.start()
        await until(lambda: len(sub.snapshot(of("telemetry"))) >= 30, timeout=15,
                    what="replay under way")
        up.on_alarm_events([event(4)])  # live, during the replay
        await until(lambda: len(sub.snapshot(of("telemetry"))) == n
                    and len(sub.snapshot(of("alarms"))) == 4, timeout=20, what="everything")
        await asyncio.sleep(0.5)  # nothing more (no duplicates) arrives

        telemetry = sub.snapshot(of("telemetry"))
        alarms = sub.snapshot(of("alarms"))
        assert seqs(telemetry) == list(range(1, n + 1))
        assert seqs(alarms) == [1, 2, 3, 4]
        live = alarms[3]
        behind = [m for m in telemetry if m.at > live.at]
        assert len(behind) >= 10, "the live alarm waited behind the backlog"
        await until(lambda: up.status().outbox.depth == 0, what="all acknowledged")


async def test_killed_publisher_resends_unacknowledged_with_the_same_seq(
        broker: Broker, subscribers: list[Subscriber], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    sub = Subscriber(broker.port, PREFIX + "telemetry")
    subscribers.append(sub)
    s = settings(broker.port)
    first = Uplink(s, SITE, GW, state, SystemClock(), POINTS)
    a = Running(first)
    await until(lambda: first.status().connected, what="connect")
    await until(lambda: first.status().published == 2, what="birth and catalog acknowledged")
    # …and removed (acknowledgements are committed in batches, within commit_interval)
    await until(lambda: first.status().outbox.depth == 0, what="birth and catalog removed")
    # delivered, but the process dies before the acknowledgements take effect
    monkeypatch.setattr(first.outbox, "ack", lambda ids: 0)
    for i in range(5):
        first.on_samples(samples(i))
    await until(lambda: len(sub.snapshot()) == 5, what="first delivery")
    broker.stop()  # and five more that never reach the broker
    await until(lambda: not first.status().connected, what="outage noticed")
    for i in range(5, 10):
        first.on_samples(samples(i))
    # (the five held in memory are committed too: not acknowledged, and disconnected)
    await until(lambda: first.status().queued == 0 and first.status().outbox.depth == 10
                and first.outbox.held() == 0, what="committed")
    await a.kill()  # no close(): nothing flushed, the outbox is simply abandoned

    before = sub.snapshot()
    sub.close()
    broker.start()
    sub = Subscriber(broker.port, PREFIX + "telemetry")  # subscribed before the restart
    subscribers.append(sub)
    async with running(s, state) as r:
        second = r.uplink
        await until(lambda: len(sub.snapshot()) == 10, what="re-sent")
        second.on_samples(samples(99))
        await until(lambda: len(sub.snapshot()) == 11, what="new batch")
        await until(lambda: second.status().outbox.depth == 0, what="acknowledged")

    got = before + sub.snapshot()
    # the same seq again for what is re-sent; a new batch's seq is above every number the
    # killed process could have given (it numbers on after the reserved block: a gap, never a
    # number used twice — gateway.uplink.outbox_numbers)
    assert seqs(got)[:15] == [1, 2, 3, 4, 5, *range(1, 11)] and seqs(got)[15] > 10
    by_seq: dict[int, set[bytes]] = {}
    for m in got:
        batch = decode(m.topic, m.payload)
        assert isinstance(batch, TelemetryBatch)
        by_seq.setdefault(batch.seq, set()).add(m.payload)
    assert all(len(p) == 1 for p in by_seq.values()), "a duplicate must be the same batch"


async def test_unreachable_broker_never_raises_and_keeps_committing(tmp_path: Path) -> None:
    from tests.uplink.conftest import free_port

    s = settings(free_port())
    async with running(s, tmp_path / "state") as r:
        r.uplink.on_samples(samples(0))
        r.uplink.on_alarm_events([event(1)])
        await until(lambda: r.uplink.status().outbox.depth == 2, what="committed")
        await asyncio.sleep(0.5)
        assert not r.task.done()
        st = r.uplink.status()
        assert not st.connected and st.last_error is not None
    reopened = Uplink(s, SITE, GW, tmp_path / "state", SystemClock(), POINTS)
    assert reopened.outbox.depth() == 2
    await reopened.close()
