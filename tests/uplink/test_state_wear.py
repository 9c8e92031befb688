"""What an idle gateway's outbox still wrote after the wear audit (two commits a minute: its
GatewayState before the publish, then the delete after the PUBACK) — gone: the periodic state
is published from memory (gateway.uplink.outbox_volatile), and a delete that only records the
central side's acknowledgement waits for a commit that happens anyway, at most `delete_wait`
(gateway.uplink.outbox_acks). Alarm events, the active-alarm snapshot and command results are
still committed before they are published. The crash after such an acknowledgement:
test_deferred_delete_crash.py."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from gateway.clock import ManualClock
from gateway.contract.wire import GatewayState, MessageKind, decode
from gateway.uplink.outbox import Outbox
from tests.fixtures.services import Broker, Subscriber, Victoria
from tests.uplink.test_commands import uplink
from tests.uplink.test_delivery import uplink_and_ingest
from tests.uplink.test_publisher import PREFIX, samples, settings, until
from tests.uplink.test_telemetry_hold_live import wal_written

A, S, T = MessageKind.ALARM, MessageKind.STATE, MessageKind.TELEMETRY


def rows(path: Path) -> list[tuple[int, bytes]]:
    with sqlite3.connect(path) as db:
        return [(int(k), bytes(p)) for k, p in
                db.execute("SELECT kind, payload FROM messages ORDER BY id")]


async def test_an_idle_gateway_commits_nothing_for_its_states_and_acknowledgements(
        broker: Broker, victoria: Victoria, subscribers: list[Subscriber],
        tmp_path: Path) -> None:
    """A real broker and ingest; a state a second and telemetry five times a second, all
    acknowledged: over eight states not one commit, the WAL untouched (each commit is one
    fsync of the WAL at synchronous=FULL). Before: two commits per state."""
    states = Subscriber(broker.port, PREFIX + "state")
    subscribers.append(states)
    s = settings(broker.port, protocol="5", delivery="ingest", state_interval="1s")
    async with uplink_and_ingest(s, tmp_path, broker, victoria, "idle-ingest") as (
            up, ingest):
        ingest.start()
        await until(lambda: up.status().connected and up.status().outbox.depth == 0,
                    what="connected, births delivered")
        up.on_samples(samples(0))  # the first batch: its numbers' block is reserved on disk
        await until(lambda: up.status().covered >= 1 and up.status().outbox.depth == 0,
                    timeout=20, what="the first batch acknowledged")
        await asyncio.sleep(1.5)  # (what the start committed is behind us)
        path = up.outbox.path
        commits, wal = up.committer.commits, wal_written(path)
        seen = len(states.snapshot())
        for i in range(1, 41):  # eight seconds of polls
            up.on_samples(samples(i))
            await asyncio.sleep(0.2)
        await until(lambda: up.status().covered >= 41, timeout=20, what="all acknowledged")
        published = [decode(m.topic, m.payload) for m in states.snapshot()[seen:]]
        assert len([x for x in published if isinstance(x, GatewayState)]) >= 6
        assert up.committer.commits == commits, "an idle gateway's outbox committed"
        assert wal_written(path) == wal


def test_a_confirmed_row_is_deleted_by_the_next_commit_that_happens_anyway(
        tmp_path: Path) -> None:
    clock = ManualClock()
    ob = Outbox(tmp_path / "outbox.db", clock=clock, commit_interval=1.0, delete_wait=30.0)
    ob.start_session()
    ob.put(A, "a", b"event-1", dseq=ob.next_seq("delivery"))
    ob.flush(defer=True)
    (first,) = ob.next_batch(10)
    before = ob.transactions
    ob.cover(first.dseq or 0)  # the ingest stored it
    assert ob.depth() == 0 and ob.stored_bytes() == 0 and ob.oldest_age() is None
    assert not ob.flush_due() and ob.flush(defer=True) == 0
    assert ob.transactions == before and rows(ob.path) == [(A.priority, b"event-1")]
    # the floor still counts the row: a process killed now sends it again, and the ingest
    # recognises it by the identity it keeps for numbers from the floor on
    assert ob.floor() == first.dseq
    assert ob.next_batch(10) == []  # never handed out again
    clock.advance(10.0)
    ob.put(A, "a", b"event-2", dseq=ob.next_seq("delivery"))
    assert ob.flush(defer=True) == 1 and ob.transactions == before + 1  # one commit for both
    assert rows(ob.path) == [(A.priority, b"event-2")]
    (second,) = ob.next_batch(10)
    ob.cover(second.dseq or 0)
    clock.advance(29.0)
    assert not ob.flush_due()
    clock.advance(1.0)  # `delete_wait` at most
    assert ob.flush_due() and ob.maybe_flush() and rows(ob.path) == []
    assert ob.floor() == (second.dseq or 0) + 1
    # PUBACK-delivered rows (a command result) likewise; a new session deletes them first
    ob.put(S, "cmd/result", b"result")
    ob.flush(defer=True)
    (result,) = ob.next_batch(10)
    ob.ack([result.id])
    assert ob.depth() == 0 and len(rows(ob.path)) == 1 and not ob.flush_due()
    ob.start_session()
    assert rows(ob.path) == [] and ob.next_batch(10) == []
    ob.close()


def test_the_periodic_state_is_kept_in_memory_and_replaced_never_committed(
        tmp_path: Path) -> None:
    clock = ManualClock()
    ob = Outbox(tmp_path / "outbox.db", clock=clock)
    ob.start_session()
    ob.put(S, "state", b"state-1", retain=True, replace=True, volatile=True)
    ob.put(S, "alarms/active", b"snapshot", retain=True, replace=True)  # an alarm state
    ob.flush()
    assert rows(ob.path) == [(S.priority, b"snapshot")]  # committed: the alarm state only
    before = ob.transactions
    out = ob.next_batch(10)
    assert [m.payload for m in out] == [b"state-1", b"snapshot"]  # the state first (birth)
    ob.put(S, "state", b"state-2", retain=True, replace=True, volatile=True)
    ob.put(S, "state", b"state-3", retain=True, replace=True, volatile=True)
    assert ob.flush() == 0 and ob.depth(S) == 2  # the newest state and the snapshot
    (newest,) = ob.next_batch(10)
    assert newest.payload == b"state-3"
    ob.ack([out[0].id, newest.id])  # PUBACKs: gone, no row to delete
    assert not ob.dirty() and ob.depth(S) == 1 and ob.transactions == before
    ob.put(S, "state", b"state-4", retain=True, replace=True, volatile=True)
    ob.start_session()  # not acknowledged before the connection went: sent again
    assert [m.payload for m in ob.next_batch(10)] == [b"state-4", b"snapshot"]
    assert ob.transactions == before
    ob.close()
    # a state an earlier version committed is replaced by committing the new one
    with sqlite3.connect(tmp_path / "outbox.db") as db:
        db.execute("INSERT INTO messages (id, kind, topic, payload, qos, retain, created_ns, "
                   "size, dseq) VALUES (1000, ?, 'state', X'6f6c64', 1, 1, 1, 10, NULL)",
                   (S.priority,))
    ob = Outbox(tmp_path / "outbox.db", clock=clock)
    ob.put(S, "state", b"state-5", retain=True, replace=True, volatile=True)
    ob.flush()
    assert [p for k, p in rows(ob.path) if p.startswith(b"state") or p == b"old"] == \
        [b"state-5"]
    ob.close()


async def test_the_uplink_puts_its_state_volatile_and_the_birth_snapshots_durable(
        broker: Broker, tmp_path: Path) -> None:
    """Through the uplink's writer: the GatewayState never reaches the file; the birth's
    catalog does (and waits there for its delete, the broker's PUBACK come)."""
    async with uplink(settings(broker.port, state_interval="1h"), tmp_path / "state") as up:
        await until(lambda: up.status().connected and up.status().published >= 2,
                    what="birth sent")
        with sqlite3.connect(up.outbox.path) as db:
            topics = {str(t) for (t,) in db.execute("SELECT topic FROM messages")}
        assert PREFIX + "state" not in topics and PREFIX + "meta" in topics
        await until(lambda: up.status().outbox.depth == 0, what="nothing counted as waiting")
        with sqlite3.connect(up.outbox.path) as db:  # (the catalog's delete still waits)
            assert db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] >= 1
