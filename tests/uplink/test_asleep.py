"""Asleep between batches (issue 15), against a real mosquitto: the uplink's writer thread
wakes about once per commit (one transaction with the new batch and the removal of the last
acknowledged one, then the next window), not for every sample, PUBACK and publish; paho's
network thread sleeps while the connection is idle instead of waking every second.

Counted, not timed: the writer's wake-ups and commits (`Committer.wakeups`, `.commits`) and
paho's thread's voluntary context switches (/proc/self/task/<tid>/status), with generous
bounds that separate the fix from what it replaced (about four writer wake-ups and 1.5
commits per batch, a paho wake-up a second). The writer's own context switches are no
measure: each commit's fdatasync and each wait for the GIL count too."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from gateway.clock import ManualClock
from gateway.contract.wire import MessageKind
from gateway.uplink.outbox import Outbox
from tests.uplink.conftest import Broker
from tests.uplink.test_publisher import running, samples, settings, until


def voluntary_switches(native_id: int) -> int:
    """The thread's voluntary context switches so far (each time it slept and was woken)."""
    status = Path(f"/proc/self/task/{native_id}/status").read_text()
    for line in status.splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches in " + status)


def thread_id(prefix: str) -> int:
    for thread in threading.enumerate():
        if thread.name.startswith(prefix) and thread.native_id is not None:
            return thread.native_id
    raise AssertionError(f"no thread named {prefix}*")


async def test_the_writer_wakes_about_once_per_batch(broker: Broker, tmp_path: Path) -> None:
    s = settings(broker.port, outbox={"commit_interval": "250ms"})
    async with running(s, tmp_path / "state") as r:
        up = r.uplink
        await until(lambda: up.status().connected and up.status().outbox.depth == 0,
                    what="connected, births delivered")
        await asyncio.sleep(0.5)
        batches = 16
        wakeups, commits = up.committer.wakeups, up.committer.commits
        for i in range(batches):  # a poll's batch every 250 ms: one per commit interval
            up.on_samples(samples(i))
            await asyncio.sleep(0.25)
        await until(lambda: up.status().outbox.depth == 0, what="all acknowledged")
        wakeups = up.committer.wakeups - wakeups
        commits = up.committer.commits - commits
        assert up.status().published >= batches
        # one commit per batch at most (the batch and the last one's removal together: the
        # removal was a commit of its own every few batches, 25 commits for 16)…
        assert commits <= batches + 2, commits
        # …and about one wake-up each (it was about four: the sample, the commit's deadline,
        # the publisher's next `want` after a publish, the PUBACK; 18 for 16 measured)
        assert wakeups <= 1.5 * batches + 2, (wakeups, batches)


async def test_an_idle_connection_does_not_wake_paho_every_second(
        broker: Broker, tmp_path: Path) -> None:
    async with running(settings(broker.port), tmp_path / "state") as r:
        up = r.uplink
        await until(lambda: up.status().connected and up.status().outbox.depth == 0,
                    what="connected, births delivered")
        await asyncio.sleep(0.5)
        paho = thread_id("paho-mqtt-client-")
        before = voluntary_switches(paho)
        await asyncio.sleep(4.0)  # nothing to publish (keepalive 30 s: no ping due)
        woke = voluntary_switches(paho) - before
        assert woke <= 1, woke  # paho's select timed out every second: 4 or 5


def test_a_steady_window_asks_sqlite_only_where_messages_can_be(tmp_path: Path) -> None:
    """One batch a second: each commit's window selects the live telemetry only (the kinds
    with nothing new and the backlog read to its end are not asked again each time; it was
    three live and three backlog selects a window), and the status one statement (was three)
    — while a message of another kind, or a new session's backlog, is still found."""
    clock = ManualClock()
    ob = Outbox(tmp_path / "outbox.db", clock=clock)
    ob.put(MessageKind.TELEMETRY, "t", b"old")
    ob.flush()
    ob.start_session()  # the stored message is backlog now
    statements: list[str] = []
    ob._db.set_trace_callback(statements.append)
    try:
        assert [m.payload for m in ob.next_batch(10, backlog_limit=20)] == [b"old"]
        last: list[int] = [m.id for m in ob.next_batch(10, backlog_limit=20)]
        for i in range(20):
            ob.put(MessageKind.TELEMETRY, "t", str(i).encode())
            ob.ack(last)
            ob.flush()
            del statements[:]
            batch = ob.next_batch(10, backlog_limit=20)
            ob.status()
            selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
            assert [m.payload for m in batch] == [str(i).encode()]
            assert len(selects) <= 2, selects
            last = [m.id for m in batch]
        ob.put(MessageKind.ALARM, "a", b"alarm")  # another kind: found at its commit
        ob.flush()
        assert [m.payload for m in ob.next_batch(10, backlog_limit=20)] == [b"alarm"]
        ob.start_session()  # everything unacknowledged is backlog again and read again
        assert [m.payload for m in ob.next_batch(10, backlog_limit=20)] == [b"alarm", b"old",
                                                                        b"19"]
    finally:
        ob._db.set_trace_callback(None)
        ob.close()
