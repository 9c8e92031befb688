"""Telemetry waits in memory (the wear audit: the outbox's commit a second was 99 % of a
gateway's writes to its SD card): held telemetry is handed out without a commit and leaves
memory with its acknowledgement, never written; what is not acknowledged in time is
committed and replayed like any row; its numbers are reserved on disk in blocks, so a process
killed with telemetry in memory numbers on above everything it published. Outbox level here;
the uplink with a real broker and ingest in test_telemetry_hold_live.py."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.clock import ManualClock
from gateway.config.section import validator
from gateway.contract.wire import MessageKind
from gateway.uplink.hold import TelemetryHold
from gateway.uplink.outbox import Outbox
from gateway.uplink.outbox_numbers import BLOCK
from gateway.uplink.settings import UplinkSettings

A, S, T = MessageKind.ALARM, MessageKind.STATE, MessageKind.TELEMETRY
REPO = Path(__file__).resolve().parents[2]


def make(tmp_path: Path, clock: ManualClock, hold: float = 10.0) -> Outbox:
    return Outbox(tmp_path / "outbox.db", clock=clock, commit_interval=1.0, hold=hold)


def put_held(ob: Outbox, payload: bytes) -> tuple[int, int]:
    seq, dseq = ob.next_seq("telemetry"), ob.next_seq("delivery")
    ob.put(T, "t", payload, dseq=dseq, hold=True, seq=seq)
    return seq, dseq


def rows(path: Path) -> list[tuple[int, bytes]]:
    with sqlite3.connect(path) as db:
        return [(int(k), bytes(p)) for k, p in
                db.execute("SELECT kind, payload FROM messages ORDER BY id")]


def test_acknowledged_telemetry_is_handed_out_from_memory_and_never_written(
        tmp_path: Path) -> None:
    clock = ManualClock()
    ob = make(tmp_path, clock)
    ob.start_session()
    put_held(ob, b"t0")
    ob.flush()  # the first block of numbers is reserved on disk (one commit)
    (first,) = ob.next_batch(10)
    assert first.payload == b"t0" and not first.backlog
    changes, transactions = ob._db.total_changes, ob.transactions
    published = []
    for i in range(1, 200):  # a batch a second, each acknowledged within a second
        put_held(ob, b"t%d" % i)
        assert ob.flush() == 0  # nothing due: telemetry is not committed
        batch = ob.next_batch(10)
        published += batch
        clock.advance(1.0)
        assert ob.settle(ob.hold) == 0  # none is `hold` old unacknowledged
        ob.cover(batch[-1].dseq or 0)  # the ingest's watermark
        assert ob.flush() == 0
    assert [m.payload for m in published] == [b"t%d" % i for i in range(1, 200)]
    assert ob.depth() == 0 and ob.held() == 0
    # not a row, not a counter: the file was not written for 199 batches
    assert ob._db.total_changes == changes and ob.transactions == transactions
    assert rows(tmp_path / "outbox.db") == []
    # in puback mode the broker's PUBACK removes it the same way
    put_held(ob, b"p")
    (m,) = ob.next_batch(10)
    assert ob.ack([m.id]) == 1 and ob.depth() == 0 and ob.flush() == 0
    assert ob._db.total_changes == changes
    ob.close()


def test_telemetry_not_acknowledged_in_time_is_committed_and_replayed(tmp_path: Path) -> None:
    clock = ManualClock()
    ob = make(tmp_path, clock, hold=5.0)
    ob.start_session()
    for i in range(3):
        put_held(ob, b"t%d" % i)
        ob.flush()
        clock.advance(1.0)
    sent = ob.next_batch(10)
    assert [m.payload for m in sent] == [b"t0", b"t1", b"t2"] and rows(ob.path) == []
    clock.advance(3.0)  # t0 and t1 are 6 and 5 s old, t2 4 s: none acknowledged
    assert ob.settle(ob.hold) == 2
    ob.flush()
    assert rows(ob.path) == [(T.priority, b"t0"), (T.priority, b"t1")]
    assert ob.held() == 1 and ob.depth() == 3
    # the same ids and numbers on disk: a re-send (the ingest's timeout) finds them there
    assert [m.payload for m in ob.fetch([m.id for m in sent])] == [b"t0", b"t1", b"t2"]
    ob.start_session()  # a reconnect: what is held is committed, everything is backlog
    assert ob.held() == 0 and len(rows(ob.path)) == 3
    replay = ob.next_batch(10, backlog_limit=10)
    assert [(m.payload, m.backlog) for m in replay] == [(b"t0", True), (b"t1", True),
                                                        (b"t2", True)]
    assert [m.dseq for m in replay] == [m.dseq for m in sent]  # the same numbers again
    ob.cover(sent[-1].dseq or 0)
    ob.flush()
    assert ob.depth() == 0 and rows(ob.path) == []
    ob.close()


def test_held_telemetry_waits_for_its_numbers_to_be_reserved_on_disk(tmp_path: Path) -> None:
    clock = ManualClock()
    ob = make(tmp_path, clock)
    ob.start_session()
    put_held(ob, b"t1")
    assert ob.dirty() and ob.next_batch(10) == []  # its numbers are not on disk yet
    ob.flush()
    assert [m.payload for m in ob.next_batch(10)] == [b"t1"]
    with sqlite3.connect(ob.path) as db:
        marks = dict(db.execute("SELECT name, value FROM counters WHERE name LIKE 'seq.%'"))
    assert marks == {"seq.telemetry": 1 + BLOCK, "seq.delivery": 1 + BLOCK}
    before = ob.transactions
    for i in range(2, BLOCK // 2 + 2):  # the next half block needs no commit at all
        put_held(ob, b"t%d" % i)
        assert not ob.dirty()
        ob.cover(i)
    assert ob.transactions == before and ob.depth() == 0
    ob.close()
    ob = make(tmp_path, clock)  # a clean stop writes the exact last numbers: no gap
    assert ob.next_seq("telemetry") == BLOCK // 2 + 2
    ob.close()


def test_the_hold_shortens_to_the_commit_interval_while_nothing_acknowledges(
        tmp_path: Path) -> None:
    clock = ManualClock()
    ob = make(tmp_path, clock, hold=10.0)
    hold = TelemetryHold(ob.hold, ob.commit_interval)
    assert hold.limit() == 1.0  # no session yet: committed as every other message
    hold.connect()
    put_held(ob, b"a")
    clock.advance(9.0)
    assert hold.settle(ob, 0) == 0 and hold.limit() == 10.0
    clock.advance(1.0)  # `hold` old, not acknowledged: committed, and the hold shortens
    assert hold.settle(ob, 0) == 1 and hold.limit() == 1.0
    put_held(ob, b"b")
    clock.advance(1.0)
    assert hold.settle(ob, 0) == 1  # one second is enough now
    ob.flush()
    put_held(ob, b"c")
    _, dseq = put_held(ob, b"d")
    ob.flush()
    assert hold.settle(ob, ob.cover(dseq)) == 0 and hold.limit() == 10.0  # acknowledged again
    hold.connected = False
    assert hold.limit() == 1.0
    ob.close()


WRITER = """
import sys, time
from gateway.clock import SystemClock
from gateway.contract.wire import MessageKind
from gateway.uplink.outbox import Outbox

ob = Outbox(sys.argv[1], clock=SystemClock(), hold=300.0)
ob.start_session()
i = 0
while True:
    i += 1
    seq, dseq = ob.next_seq("telemetry"), ob.next_seq("delivery")
    ob.put(MessageKind.TELEMETRY, "t", b"batch", dseq=dseq, hold=True, seq=seq)
    if i % 50 == 0:  # an alarm event now and then: committed before it is handed out
        ob.put(MessageKind.ALARM, "a", b"event", dseq=ob.next_seq("delivery"))
    if i % 50 == 0 or ob.dirty():
        ob.flush()
    for m in ob.next_batch(100):  # "published": what a subscriber would have seen
        print(m.kind.value, m.dseq, seq if m.kind is MessageKind.TELEMETRY else 0, flush=True)
    time.sleep(0.0005)
"""


def test_a_process_killed_with_telemetry_in_memory_numbers_on_above_what_it_published(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "outbox.db"
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=REPO,
                             stdout=subprocess.PIPE, text=True)
    published: list[tuple[str, int, int]] = []
    try:
        assert child.stdout is not None
        while len(published) < 3 * BLOCK // 2:  # past a reservation made early
            kind, dseq, seq = child.stdout.readline().split()
            published.append((kind, int(dseq), int(seq)))
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(10)
    telemetry = [p for p in published if p[0] == "telemetry"]
    assert telemetry, "held telemetry went out before any commit of its own"
    stored = rows(path)
    assert not any(k == T.priority for k, _ in stored), "held telemetry was never written"
    assert sum(1 for k, _ in stored if k == A.priority) >= 1  # the alarm events are
    with caplog.at_level(logging.WARNING, logger="roomwarden.uplink"):
        ob = Outbox(path, clock=ManualClock())
    # above every number it published (the ingest would take a reused one for a duplicate)
    assert ob.next_seq("delivery") > max(d for _, d, _ in published)
    assert ob.next_seq("telemetry") > max(s for _, _, s in telemetry)
    assert "event=outbox_unclean_stop" in caplog.text
    # the floor the state carries passes the gap: below it nothing is held
    assert ob.floor() <= min(d for k, d, _ in published if k == "alarm")
    ob.close()
    with sqlite3.connect(path) as db:
        counters = dict(db.execute("SELECT name, value FROM counters"))
    assert counters["unclean_stops"] == 1 and counters["clean"] == 1
    assert json.dumps(counters)  # (plain numbers)


def test_telemetry_hold_is_bounded_with_a_clear_error() -> None:
    base = {"broker": "127.0.0.1"}
    assert validator(UplinkSettings).validate_python(base).outbox.telemetry_hold == 10.0
    ok = validator(UplinkSettings).validate_python({**base, "outbox": {"telemetry_hold": "2m"}})
    assert ok.outbox.telemetry_hold == 120.0
    for bad in ("500ms", "6m"):
        with pytest.raises(ValidationError, match="telemetry_hold must be between 1s and 5m"):
            validator(UplinkSettings).validate_python({**base, "outbox": {"telemetry_hold": bad}})


def test_an_outbox_from_before_gives_up_autoincrement_and_keeps_its_ids(tmp_path: Path) -> None:
    """AUTOINCREMENT wrote `sqlite_sequence` at every commit: an older file is copied into the
    new table at opening (small enough), its rows and numbers kept, and ids go on above the
    highest stored."""
    path = tmp_path / "outbox.db"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, kind INTEGER NOT NULL,"
            " topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER"
            " NOT NULL, created_ns INTEGER NOT NULL, size INTEGER NOT NULL, dseq INTEGER);"
            "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
            "INSERT INTO messages VALUES (7, 2, 't', x'31', 1, 0, 1, 100, 3);"
            "UPDATE sqlite_sequence SET seq = 9 WHERE name = 'messages';"
            "INSERT INTO counters VALUES ('seq.delivery', 3), ('stream', 5);")
    ob = Outbox(path, clock=ManualClock())
    with sqlite3.connect(path) as db:
        (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'messages'").fetchone()
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE "
                                            "type = 'index' AND tbl_name = 'messages'")}
    assert "AUTOINCREMENT" not in sql.upper()
    assert {"messages_kind_id", "messages_topic", "messages_dseq"} <= indexes
    ob.start_session()
    (old,) = ob.next_batch(10, backlog_limit=10)
    assert (old.id, old.payload, old.dseq, old.backlog) == (7, b"1", 3, True)
    ob.put(S, "s", b"new", retain=True, replace=True)
    ob.flush()
    (new,) = ob.next_batch(10)
    assert new.id > 7 and ob.next_seq("delivery") == 4 and ob.stream == 5
    ob.close()
