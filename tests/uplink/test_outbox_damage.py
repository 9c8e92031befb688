"""A damaged `uplink/outbox.sqlite` (a bad SD-card block) is moved aside, logged and replaced by a
fresh outbox — at opening (the gateway starts) and while running (the writer goes on) — and a
commit that keeps failing for another reason is retried with a back-off, never ends the
writer, and bounds what waits in memory (telemetry first, alarm events last and logged).
The damage is done as the storage audit's corrupt_start.py and corrupt_backlog.py did it."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from pathlib import Path

import pytest

from gateway.clock import ManualClock, SystemClock
from gateway.contract.wire import Channel, MessageKind
from gateway.uplink import committer as committer_module
from gateway.uplink.committer import Committer
from gateway.uplink.items import Item
from gateway.uplink.outbox import Outbox, OutboxError
from gateway.uplink.publisher import Uplink
from gateway.uplink.records import event_message
from gateway.uplink.replay import ReplayPacer
from tests.uplink.test_publisher import GW, POINTS, SITE, event, settings

A, S, T = MessageKind.ALARM, MessageKind.STATE, MessageKind.TELEMETRY


def scribble(path: Path, *, keep: int = 100) -> None:
    """corrupt_start.py: no -wal/-shm, the first `keep` bytes (the 100-byte SQLite header)
    kept, the rest random."""
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    data = bytearray(path.read_bytes())
    if len(data) < 8192:
        data += bytes(8192 - len(data))
    data[keep:] = os.urandom(len(data) - keep)
    path.write_bytes(bytes(data))


def scribble_pages(path: Path, start: int, end: int) -> None:
    """corrupt_backlog.py: 4 KiB of noise in every 4th page from `start` to `end` (bytes)."""
    with open(path, "r+b") as f:
        for off in range(start, end, 4 * 4096):
            f.seek(off)
            f.write(os.urandom(4096))


def filled(path: Path, n: int = 200, size: int = 300) -> int:
    """An outbox with `n` telemetry messages committed and closed; returns its stream."""
    ob = Outbox(path, clock=ManualClock())
    for _ in range(n):
        ob.put(T, "t", os.urandom(size))
    ob.put(A, "a", b"alarm")
    ob.flush()
    stream = ob.stream
    ob.close()
    return stream


def aside(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".corrupt-*"))


@pytest.mark.parametrize("keep", [0, 100, 3 * 4096],
                         ids=["header-lost", "header-kept", "schema-kept"])
def test_a_damaged_outbox_is_moved_aside_and_a_fresh_one_started(
        tmp_path: Path, keep: int, caplog: pytest.LogCaptureFixture) -> None:
    """`header-kept`: SQLite refuses the file at opening; `schema-kept`: it opens and the rows
    are unreadable (the audit's restart after damage at run time: `read_totals`);
    `header-lost`: not even SQLite's header is left — still taken for an outbox by its name
    (`outbox.sqlite`: gateway.uplink.outbox_recovery, tests/uplink/test_outbox_path.py)."""
    path = tmp_path / "uplink" / "outbox.sqlite"
    old_stream = filled(path, n=400)
    scribble(path, keep=keep)
    caplog.set_level(logging.ERROR, "roomwarden.uplink")
    ob = Outbox(path, clock=ManualClock())  # before: OutboxError / sqlite3.DatabaseError
    try:
        moved = aside(path)
        assert len(moved) == 1 and moved[0].stat().st_size > 0
        assert ob.recoveries == 1 and ob.recovery_note is not None
        assert str(moved[0]) in ob.recovery_note and "lost" in ob.recovery_note
        lines = [r.getMessage() for r in caplog.records if "event=outbox_corrupt" in r.getMessage()]
        assert len(lines) == 1 and f"moved_to={moved[0]}" in lines[0]
        assert "alarm journal" in lines[0]
        # a fresh outbox: a new delivery stream, empty, and it works
        assert ob.depth() == 0 and ob.stream != old_stream
        ob.start_session()
        ob.put(A, "a", b"after")
        ob.flush()
        assert [m.payload for m in ob.next_batch(10)] == [b"after"]
    finally:
        ob.close()
    again = Outbox(path, clock=ManualClock())  # and it is a good file now
    assert again.recoveries == 0 and again.depth() == 1
    again.close()


def test_messages_of_a_kind_this_version_does_not_know_go_alone(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Rows a newer version wrote (a kind added later), then a downgrade: those rows are
    dropped and logged; the rest of the outbox stays (the upgrade audit: the whole outbox was
    moved aside as damaged, everything queued lost)."""
    path = tmp_path / "uplink" / "outbox.sqlite"
    stream = filled(path, n=10)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE messages SET kind = 99 WHERE id IN (SELECT id FROM messages "
                   "ORDER BY id LIMIT 3)")
    caplog.set_level(logging.WARNING, "roomwarden.uplink")
    ob = Outbox(path, clock=ManualClock())
    try:
        assert aside(path) == [] and ob.recoveries == 0 and ob.stream == stream
        assert ob.depth() == 8  # 7 telemetry batches and the alarm event
        assert "event=outbox_unknown_kinds_dropped" in caplog.text and "messages=3" in caplog.text
    finally:
        ob.close()


def test_an_outbox_that_cannot_be_opened_for_another_reason_is_not_moved(tmp_path: Path
                                                                         ) -> None:
    """Only damage moves a file aside: a path SQLite cannot open at all is still an error."""
    path = tmp_path / "outbox.sqlite"
    path.mkdir()
    with pytest.raises(OutboxError):
        Outbox(path, clock=ManualClock())
    assert path.is_dir() and aside(path) == []


def test_an_uplink_starts_with_a_damaged_outbox(tmp_path: Path) -> None:
    state = tmp_path / "state"
    path = state / "uplink" / "outbox.sqlite"
    filled(path)
    scribble(path)
    uplink = Uplink(settings(9), SITE, GW, state, SystemClock(), POINTS)  # before: OutboxError
    try:
        assert uplink.outbox.recoveries == 1 and len(aside(path)) == 1
        uplink.on_alarm_events([event(7)])
        assert uplink.alarm_events_stored() is None  # a fresh outbox: the daemon starts it
    finally:
        uplink.committer.close()
    assert uplink.committer.faults.error is None


def big_backlog(path: Path, mib: float = 8.0) -> Outbox:
    """An open outbox holding `mib` MiB of telemetry: more than SQLite's page cache, so the
    oldest rows are read from the file again when a session starts."""
    ob = Outbox(path, clock=ManualClock(), synchronous="NORMAL")
    payload = b"x" * 2000
    for _ in range(int(mib * 2**20 / 2000)):
        ob.put(T, "t", payload)
        if ob.flush_due():
            ob.flush()
    ob.flush()
    return ob


def test_damage_found_by_a_read_while_running_is_replaced_and_the_outbox_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "outbox.sqlite"
    ob = big_backlog(path)
    try:
        stream, issued, held = ob.stream, ob.next_seq("delivery"), ob.depth()
        ob.put(T, "t", b"numbered", dseq=issued)
        scribble_pages(path, 8 * 4096, path.stat().st_size // 2)
        caplog.set_level(logging.ERROR, "roomwarden.uplink")
        ob.start_session()  # (commits the pending message: to the damaged file)
        with pytest.raises(OutboxError):  # the backlog read from its start finds the damage
            while ob.next_batch(500):
                pass
        assert len(aside(path)) == 1
        assert any("event=outbox_corrupt" in r.getMessage() for r in caplog.records)
        # the same stream and numbers; what the file held counts as dropped; the floor
        # moves past the lost numbers (the ingest's watermark follows it)
        assert ob.stream == stream and ob.depth() == 0
        assert ob.dropped()[T] == held + 1 and ob.floor() == issued + 1
        assert ob.next_seq("delivery") == issued + 1
        ob.put(A, "a", b"after")
        ob.flush()
        batch = ob.next_batch(10)
        assert [m.payload for m in batch] == [b"after"] and batch[0].id > held + 1
    finally:
        ob.close()
    reopened = Outbox(path, clock=ManualClock())
    assert reopened.stream == stream and reopened.dropped()[T] == held + 1
    assert reopened.recoveries == 0 and reopened.depth() == 1
    reopened.close()


def test_damage_found_by_a_commit_is_replaced_and_the_commit_done_in_the_fresh_file(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Acknowledgements of backlog rows make the commit touch the damaged pages: the fresh
    file takes the commit — what waited in memory, alarm events first."""
    path = tmp_path / "outbox.sqlite"
    ob = big_backlog(path)
    try:
        held = ob.depth()
        scribble_pages(path, 8 * 4096, path.stat().st_size // 2)
        caplog.set_level(logging.ERROR, "roomwarden.uplink")
        ob.put(T, "t", b"pending-telemetry")
        ob.put(A, "a", b"pending-alarm")
        ob.ack(range(1, 2000))
        assert ob.flush() == 2  # no error: done again in the fresh file
        assert len(aside(path)) == 1 and ob.recoveries == 1
        assert any("event=outbox_corrupt" in r.getMessage() for r in caplog.records)
        ob.start_session()
        batch = ob.next_batch(10)
        assert [m.payload for m in batch] == [b"pending-alarm", b"pending-telemetry"]
        assert held < batch[0].id < batch[1].id  # ids go on; alarm events first
    finally:
        ob.close()


def committer_for(ob: Outbox) -> Committer:
    return Committer(ob, ReplayPacer(SystemClock(), messages_per_s=1000, bytes_per_s=2**30),
                     SystemClock(), site=SITE, gateway=GW,
                     topics={ch: f"roomwarden/{SITE}/{GW}/{ch.value}" for ch in Channel},
                     catalog="0" * 16, numbered=True, on_reject=lambda why: None)


def test_a_writer_whose_commits_fail_backs_off_and_recovers(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A file that cannot be written (the SD card's filesystem remounted read-only after
    errors): the writer logs it at most once a minute, retries with a back-off, says so in
    `faults.error`, keeps the messages, and commits them when writing works again."""
    ob = Outbox(tmp_path / "outbox.sqlite", clock=SystemClock(), commit_interval=0.05)
    committer = committer_for(ob)
    windows: list[int] = []
    caplog.set_level(logging.ERROR, "roomwarden.uplink")
    loop = asyncio.new_event_loop()
    try:
        committer.start(loop, lambda w: windows.append(len(w.messages)))
        ob._db.execute("PRAGMA query_only=1")  # every write refused: SQLITE_READONLY
        committer.add(Item(A, event_message(event(1), site=SITE, gateway=GW), time.time_ns()),
                      urgent=True)
        time.sleep(0.8)  # retries after 0.05, 0.1, 0.2, 0.4 s: not every 0.05 s
        assert committer._thread is not None and committer._thread.is_alive()
        fails = [r for r in caplog.records if "event=outbox_commit_failed" in r.getMessage()]
        assert len(fails) <= 1  # the rest within the minute are counted, not logged
        assert 3 <= committer.faults.failures <= 6
        assert committer.faults.error is not None and "readonly" in committer.faults.error
        assert ob.depth(A) == 1  # kept, pending
        ob._db.execute("PRAGMA query_only=0")
        committer.add(Item(A, event_message(event(2), site=SITE, gateway=GW),
                           time.time_ns()), urgent=True)
        deadline = time.monotonic() + 5
        while committer.faults.error is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert committer.faults.error is None and committer.last_error is None
    finally:
        committer.close()
        loop.close()
    reopened = Outbox(tmp_path / "outbox.sqlite", clock=SystemClock())
    assert reopened.depth(A) == 2
    reopened.close()


def test_the_buffer_drops_telemetry_first_and_alarm_events_only_counted_and_logged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(committer_module, "MAX_BUFFERED", 4)
    ob = Outbox(tmp_path / "outbox.sqlite", clock=SystemClock())
    committer = committer_for(ob)  # no writer thread: nothing takes the buffer
    caplog.set_level(logging.ERROR, "roomwarden.uplink")
    try:
        alarms = [Item(A, object(), n) for n in range(4)]  # type: ignore[arg-type]
        assert committer.add(Item(T, [], 100)) is True
        for item in alarms[:3]:
            assert committer.add(item) is True
        assert committer.add(alarms[3]) is False  # the telemetry went, no alarm event
        assert committer._buffer == alarms
        assert committer.add(Item(A, object(), 5)) is False  # type: ignore[arg-type]
        assert len(committer._buffer) == 4 and committer._buffer[0] is alarms[1]
        assert committer.alarms_dropped == 1
        assert any("event=uplink_buffer_alarm_dropped" in r.getMessage()
                   for r in caplog.records)
    finally:
        committer._buffer.clear()
        ob.close()


def test_pending_messages_are_bounded_by_bytes_telemetry_first(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ob = Outbox(tmp_path / "outbox.sqlite", clock=ManualClock(), max_pending_bytes=64 * 1024)
    caplog.set_level(logging.ERROR, "roomwarden.uplink")
    try:
        ob.put(A, "a", b"alarm")
        for _ in range(100):
            ob.put(T, "t", b"x" * 3000)
        assert ob.stored_bytes() <= 64 * 1024 and ob.depth(A) == 1
        assert ob.dropped()[T] > 0 and ob.dropped()[A] == 0
        for _ in range(40):
            ob.put(A, "a", b"y" * 3000)
        assert ob.stored_bytes() <= 64 * 1024 and ob.dropped()[A] > 0
        assert any("event=outbox_alarm_dropped" in r.getMessage() for r in caplog.records)
    finally:
        ob.close()


def test_sqlite_errors_of_reads_are_outbox_errors(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "outbox.sqlite", clock=ManualClock())
    ob.put(T, "t", b"1")
    ob.flush()
    ob._db.execute("DROP TABLE messages")  # not damage: a read that fails
    with pytest.raises(OutboxError):
        ob.next_batch(10)
    with pytest.raises(OutboxError):
        ob.fetch([1])
    assert aside(tmp_path / "outbox.sqlite") == []
    with pytest.raises(sqlite3.Error):
        ob._db.execute("SELECT * FROM messages")
    ob._db.close()
