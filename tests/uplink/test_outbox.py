from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.contract.wire import MessageKind
from gateway.uplink.outbox import Outbox, stored_size
from gateway.uplink.replay import ReplayPacer, take

A, S, T = MessageKind.ALARM, MessageKind.STATE, MessageKind.TELEMETRY



def rows(path: Path) -> list[int]:
    """The ids stored in the file."""
    with sqlite3.connect(path) as db:
        return [int(r[0]) for r in db.execute("SELECT id FROM messages")]

def make(tmp_path: Path, clock: ManualClock | None = None, **kw: object) -> Outbox:
    return Outbox(tmp_path / "outbox.db", clock=clock or ManualClock(), **kw)  # type: ignore[arg-type]


def payloads(batch: list) -> list[bytes]:  # type: ignore[type-arg]
    return [m.payload for m in batch]


def test_put_is_committed_after_the_interval_and_only_then_published(tmp_path: Path) -> None:
    clock = ManualClock()
    ob = make(tmp_path, clock, commit_interval=0.5)
    ob.start_session()
    ob.put(T, "t", b"1")  # put never commits
    assert ob.depth() == 1 and ob.next_batch(10) == []  # not durable yet: not handed out
    clock.advance(0.3)
    assert ob.maybe_flush() is False
    clock.advance(0.2)
    assert ob.flush_due() and ob.maybe_flush() is True
    assert payloads(ob.next_batch(10)) == [b"1"]
    assert ob.next_batch(10) == []  # handed out once per session


def test_put_never_commits_a_full_batch_makes_a_commit_due(tmp_path: Path) -> None:
    """Committing is the owner's job (the uplink's committer commits alarm events at once):
    put() only appends, and says nothing about commits."""
    ob = make(tmp_path, max_batch=3)
    ob.start_session()
    ob.put(A, "a", b"alarm")
    assert ob.next_batch(10) == [] and not ob.flush_due()
    assert ob.flush() == 1
    assert payloads(ob.next_batch(10)) == [b"alarm"]
    ob.put(T, "t", b"1")
    ob.put(T, "t", b"2")
    assert not ob.flush_due()
    ob.put(T, "t", b"3")
    assert ob.flush_due() and ob.next_batch(10) == []
    ob.flush()
    assert payloads(ob.next_batch(10)) == [b"1", b"2", b"3"]


def test_priority_order_within_backlog_and_within_live(tmp_path: Path) -> None:
    ob = make(tmp_path)
    for kind, p in [(T, b"t1"), (S, b"s1"), (T, b"t2"), (A, b"a1"), (S, b"s2"), (A, b"a2")]:
        ob.put(kind, "x", p)
    ob.start_session()
    batch = ob.next_batch(100)
    assert payloads(batch) == [b"a1", b"a2", b"s1", b"s2", b"t1", b"t2"]
    assert all(m.backlog for m in batch)


def test_live_first_and_backlog_bounded(tmp_path: Path) -> None:
    ob = make(tmp_path)
    for i in range(5):
        ob.put(T, "t", f"old{i}".encode())
    ob.start_session()  # reconnect: those five are backlog
    ob.put(T, "t", b"new0")
    ob.put(A, "a", b"alarm")
    ob.flush()
    batch = ob.next_batch(10, backlog_limit=2)
    assert payloads(batch) == [b"alarm", b"new0", b"old0", b"old1"]
    assert [m.backlog for m in batch] == [False, False, True, True]
    ob.put(T, "t", b"new1")
    ob.flush()
    assert payloads(ob.next_batch(2, backlog_limit=5)) == [b"new1", b"old2"]
    assert payloads(ob.next_batch(10, backlog_limit=0)) == []
    assert payloads(ob.next_batch(10)) == [b"old3", b"old4"]


def test_ack_removes_and_unacked_are_sent_again_next_session(tmp_path: Path) -> None:
    ob = make(tmp_path)
    for i in range(4):
        ob.put(T, "t", str(i).encode())
    ob.start_session()
    batch = ob.next_batch(10)
    ob.ack([batch[0].id, batch[2].id])
    assert ob.depth() == 2  # acknowledged: not counted, deleted at the next commit
    assert len(rows(ob.path)) == 4
    ob.flush()
    assert ob.depth() == 2 and len(rows(ob.path)) == 2
    ob.start_session()  # reconnected before the other PUBACKs came
    assert payloads(ob.next_batch(10)) == [b"1", b"3"]
    ob.ack([999_999])  # unknown / already dropped ids are harmless
    ob.close()
    again = make(tmp_path)
    again.start_session()
    assert payloads(again.next_batch(10)) == [b"1", b"3"]


def test_ids_are_never_reused(tmp_path: Path) -> None:
    ob = make(tmp_path)
    ob.put(T, "t", b"1")
    ob.flush()
    ob.start_session()
    [m] = ob.next_batch(1)
    ob.ack([m.id])
    ob.flush()
    ob.put(T, "t", b"2")
    ob.flush()
    [n] = ob.next_batch(1)
    assert n.id > m.id


def test_sequence_numbers_survive_restarts(tmp_path: Path) -> None:
    ob = make(tmp_path)
    assert [ob.next_seq() for _ in range(3)] == [1, 2, 3]
    assert ob.next_seq("other") == 1
    ob.put(T, "t", b"3")
    ob.close()
    ob = make(tmp_path)
    assert ob.next_seq() == 4
    assert ob.next_seq("other") == 2


def test_snapshots_replace_older_unpublished_ones(tmp_path: Path) -> None:
    ob = make(tmp_path)
    ob.put(S, "state", b"s1", retain=True, replace=True)
    ob.put(S, "state", b"s2", retain=True, replace=True)
    ob.put(S, "active", b"x1", retain=True, replace=True)
    ob.flush()
    ob.put(S, "state", b"s3", retain=True, replace=True)
    ob.flush()
    ob.start_session()
    batch = ob.next_batch(10)
    assert payloads(batch) == [b"x1", b"s3"]
    assert all(m.retain for m in batch)
    with pytest.raises(ValueError):
        ob.put(S, "state", b"s", replace=True)


def test_budget_drops_oldest_telemetry_then_state_then_alarms(tmp_path: Path) -> None:
    size = stored_size(100, 1)
    assert size == stored_size(100, 1, 4096) > 100
    ob = make(tmp_path, budget_bytes=10 * size)
    for i in range(3):
        ob.put(A, "a", b"%99d" % i + b"A")
    ob.put(S, "s", b"%99d" % 0 + b"S")
    for i in range(6):
        ob.put(T, "t", b"%99d" % i + b"T")
    ob.flush()
    assert ob.depth() == 10 and ob.stored_bytes() == 10 * size
    ob.put(T, "t", b"%99d" % 6 + b"T")
    ob.flush()
    assert ob.dropped() == {A: 0, S: 0, T: 1}
    assert ob.depth(T) == 6
    for i in range(7, 14):  # more telemetry than the budget holds besides the rest
        ob.put(T, "t", b"%99d" % i + b"T")
    ob.flush()
    assert ob.depth(T) == 6 and ob.dropped()[T] == 8
    for i in range(8):  # alarms push out telemetry, then state, then old alarms
        ob.put(A, "a", b"%99d" % (i + 3) + b"A")
        ob.flush()  # the committer commits each alarm event at once
    assert ob.depth(T) == 0 and ob.depth(S) == 0 and ob.depth(A) == 10
    assert ob.dropped() == {A: 1, S: 1, T: 14}
    ob.start_session()
    assert [m.payload.strip() for m in ob.next_batch(20)][:2] == [b"1A", b"2A"]
    ob.close()
    assert make(tmp_path).dropped() == {A: 1, S: 1, T: 14}  # persisted


def test_oldest_age_and_status(tmp_path: Path) -> None:
    clock = ManualClock()
    ob = make(tmp_path, clock)
    assert ob.oldest_age() is None
    ob.put(T, "t", b"x")
    clock.advance(2)
    assert ob.oldest_age() == pytest.approx(2)
    ob.flush()
    clock.advance(3)
    ob.put(A, "a", b"y")
    status = ob.status()
    assert status.depth == 2 and status.oldest_age_s == pytest.approx(5)
    assert status.budget == ob.budget_bytes


def test_database_settings(tmp_path: Path) -> None:
    ob = make(tmp_path)
    ob.put(T, "t", b"x")
    ob.close()
    db = sqlite3.connect(tmp_path / "outbox.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        make(tmp_path, commit_interval=1.5)
    with pytest.raises(ValueError):
        make(tmp_path, synchronous="OFF")


def test_pacer_bounds_the_replay_rate_but_not_live(tmp_path: Path) -> None:
    clock = ManualClock()
    ob = make(tmp_path, clock)
    for i in range(1000):
        ob.put(T, "t", b"%d" % i)
    ob.start_session()
    pacer = ReplayPacer(clock, messages_per_s=20, bytes_per_s=1e9, burst_s=1)
    got: list[int] = []
    live = 0
    for _tick in range(100):  # 10 s in 0.1-s steps
        ob.put(A, "a", b"live")
        ob.flush()
        batch = take(ob, pacer, window=50)
        live += sum(1 for m in batch if not m.backlog)
        got += [int(m.payload) for m in batch if m.backlog]
        clock.advance(0.1)
    assert live == 100  # every live message went out at once
    assert got == list(range(len(got)))  # backlog in order
    assert 20 * 10 <= len(got) <= 20 * 10 + 20 + 1  # rate × time + burst


def test_pacer_byte_debt(tmp_path: Path) -> None:
    clock = ManualClock()
    pacer = ReplayPacer(clock, messages_per_s=1000, bytes_per_s=1000, burst_s=1)
    assert pacer.allowance() == 1000
    pacer.spend(1, 5000)
    assert pacer.allowance() == 0 and pacer.delay() == pytest.approx(4.001)
    clock.advance(4.01)
    assert pacer.allowance() > 0


def test_covered_entries_leave_at_the_next_commit_and_are_never_handed_out(
        tmp_path: Path) -> None:
    ob = make(tmp_path)
    stream = ob.stream
    for i in range(1, 6):
        ob.put(T, "t", b"t%d" % i, dseq=ob.next_seq("delivery"))
    ob.put(S, "s", b"state", retain=True, replace=True)
    ob.flush()
    assert ob.floor() == 1
    ob.start_session()
    first = ob.next_batch(2)
    assert [m.dseq for m in first] == [None, 1]  # state first, then telemetry
    ob.cover(3)
    assert [m.dseq for m in ob.next_batch(10)] == [4, 5]  # 2 and 3 are covered: skipped
    assert ob.depth() == 3 and ob.dirty()  # covered: not counted, deleted at the next commit
    ob.flush()
    assert ob.depth() == 3 and ob.floor() == 4
    assert [m.payload for m in ob.fetch([m.id for m in first])] == [b"state"]
    ob.close()
    again = make(tmp_path)  # the stream and the numbering survive a restart
    assert again.stream == stream and again.next_seq("delivery") == 6
    assert again.floor() == 4
    again.cover(5)
    again.flush()
    assert again.floor() == 7 and again.depth() == 1  # none left: the next number (6 is taken)


def test_floor_skips_what_the_budget_dropped(tmp_path: Path) -> None:
    ob = make(tmp_path, budget_bytes=3 * stored_size(100, 1))
    for _ in range(6):
        ob.put(T, "t", b"x" * 100, dseq=ob.next_seq("delivery"))
        ob.flush()
    assert ob.dropped()[T] == 3 and ob.floor() == 4


def test_an_outbox_from_before_delivery_numbers_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, kind INTEGER NOT NULL,"
            " topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER"
            " NOT NULL, created_ns INTEGER NOT NULL, size INTEGER NOT NULL);"
            "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
            "INSERT INTO messages (kind, topic, payload, qos, retain, created_ns, size) "
            "VALUES (2, 't', x'31', 1, 0, 1, 100);")
    ob = Outbox(path, clock=ManualClock())
    ob.start_session()
    (old,) = ob.next_batch(10)
    assert old.payload == b"1" and old.dseq is None  # leaves on PUBACK, as before
