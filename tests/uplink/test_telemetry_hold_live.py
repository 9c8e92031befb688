"""Telemetry waits in memory, with a real Mosquitto, a real ingest and VictoriaMetrics: what
the ingest acknowledges in time is never written to the outbox file; what it does not is
committed after `telemetry_hold`, replayed after a reconnect with the same numbers, and stored
once the ingest is there (the outbox level: test_telemetry_hold.py)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from gateway.contract.wire import MessageKind, TelemetryBatch, decode
from tests.faults.harness import stored
from tests.fixtures.services import Broker, Subscriber, Victoria, wait_for
from tests.uplink.test_delivery import uplink_and_ingest
from tests.uplink.test_publisher import GW, PREFIX, SITE, samples, settings, until


def telemetry_rows(path: Path) -> int:
    """Telemetry rows in the outbox file (read beside the running writer: WAL)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return int(db.execute("SELECT COUNT(*) FROM messages WHERE kind = ?",
                              (MessageKind.TELEMETRY.priority,)).fetchone()[0])
    finally:
        db.close()


def batches(sub: Subscriber) -> list[TelemetryBatch]:
    out = []
    for m in sub.snapshot():
        batch = decode(m.topic, m.payload)
        assert isinstance(batch, TelemetryBatch)
        out.append(batch)
    return out


def wal_written(path: Path) -> tuple[int, int]:
    """(size, mtime) of the outbox's WAL: a commit appends to it."""
    st = path.with_name(path.name + "-wal").stat()
    return st.st_size, st.st_mtime_ns


async def test_telemetry_the_ingest_acknowledges_in_time_is_never_written(
        broker: Broker, victoria: Victoria, tmp_path: Path) -> None:
    s = settings(broker.port, protocol="5", delivery="ingest", state_interval="1h")
    async with uplink_and_ingest(s, tmp_path, broker, victoria, "hold-ingest") as (
            up, ingest):
        ingest.start()
        await until(lambda: up.status().connected and up.status().outbox.depth == 0,
                    what="connected, births delivered")
        up.on_samples(samples(0))  # the first batch: its numbers' block is reserved on disk
        await until(lambda: up.status().covered >= 1 and up.status().outbox.depth == 0,
                    timeout=20, what="the first batch acknowledged")
        await asyncio.sleep(1.5)  # (the births' removal committed)
        path = up.outbox.path
        changes, commits, wal = up.outbox._db.total_changes, up.committer.commits, \
            wal_written(path)
        for i in range(1, 21):
            up.on_samples(samples(i))
            await asyncio.sleep(0.2)
        await until(lambda: up.status().covered >= 21 and up.status().outbox.depth == 0,
                    timeout=20, what="every batch acknowledged by the ingest")
        await asyncio.sleep(1.5)  # anything due would be committed by now
        assert up.status().published >= 21 and up.status().resent == 0
        # 20 batches published and acknowledged: not a row, not a commit, not a WAL page
        assert up.outbox._db.total_changes == changes
        assert up.committer.commits == commits
        assert wal_written(path) == wal
        assert telemetry_rows(path) == 0
    victoria.flush()
    db = stored(victoria, SITE, GW)
    assert len(db.series[("th-1.temperature", "good", "value")]) == 21 and not db.doubled


async def test_telemetry_not_acknowledged_in_time_is_committed_and_replayed(
        broker: Broker, victoria: Victoria, subscribers: list[Subscriber],
        tmp_path: Path) -> None:
    """No ingest at first: each batch is published from memory, then committed once it is
    `telemetry_hold` (1 s) old unacknowledged. After a reconnect the committed batches are
    replayed with their numbers; when the ingest comes, they are stored once and leave."""
    sub = Subscriber(broker.port, PREFIX + "telemetry")
    subscribers.append(sub)
    s = settings(broker.port, protocol="5", delivery="ingest", ack_timeout="2s",
                 outbox={"commit_interval": "200ms", "telemetry_hold": "1s",
                         "delete_wait": "2s"})
    async with uplink_and_ingest(s, tmp_path, broker, victoria, "late-ingest") as (
            up, ingest):
        await until(lambda: up.status().connected, what="connect")
        for i in range(5):
            up.on_samples(samples(i))
            await asyncio.sleep(0.1)
        await until(lambda: len(sub.snapshot()) == 5, what="published from memory")
        await until(lambda: telemetry_rows(up.outbox.path) == 5 and up.outbox.held() == 0,
                    what="committed: not acknowledged within telemetry_hold")
        first = batches(sub)
        sub.close()
        broker.stop()
        await until(lambda: not up.status().connected, what="outage noticed")
        broker.start()
        again = Subscriber(broker.port, PREFIX + "telemetry")
        subscribers.append(again)
        await until(lambda: up.status().connected, what="reconnect")
        await until(lambda: len(again.snapshot()) >= 5, what="the backlog replayed")
        replayed = batches(again)
        assert len(first) == 5 and all(b.dseq is not None for b in first)
        assert sorted((b.seq, b.dseq) for b in replayed) == \
            sorted((b.seq, b.dseq) for b in first)  # the same numbers again
        ingest.start()
        wait_for(lambda: bool(ingest.status()["subscribed"]), what="ingest subscribed")
        up.on_samples(samples(5))  # a live one (the five go again at their ack timeout)
        await until(lambda: up.status().outbox.depth == 0, timeout=30,
                    what="stored and acknowledged")
        await until(lambda: telemetry_rows(up.outbox.path) == 0,  # (no commit of their own
                    what="deleted within delete_wait")           # before `delete_wait`)
    victoria.flush()
    db = stored(victoria, SITE, GW)
    assert len(db.series[("th-1.temperature", "good", "value")]) == 6 and not db.doubled


async def test_while_disconnected_held_telemetry_is_committed_within_the_commit_interval(
        broker: Broker, victoria: Victoria, tmp_path: Path) -> None:
    """No session, no acknowledgement to wait for: telemetry is committed as every other
    message, within `commit_interval` — not after `telemetry_hold` (5 minutes here)."""
    s = settings(broker.port, protocol="5", delivery="ingest",
                 outbox={"commit_interval": "200ms", "telemetry_hold": "5m"})
    async with uplink_and_ingest(s, tmp_path, broker, victoria, "away-ingest") as (up, _i):
        await until(lambda: up.status().connected, what="connect")
        broker.stop()
        await until(lambda: not up.status().connected, what="outage noticed")
        for i in range(3):
            up.on_samples(samples(i))
        await until(lambda: telemetry_rows(up.outbox.path) == 3 and up.outbox.held() == 0,
                    what="committed while disconnected")
        broker.start()
