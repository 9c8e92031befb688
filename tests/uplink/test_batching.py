"""The polls of one commit interval share a telemetry message (gateway.uplink.committer's
`add_samples`), against a real mosquitto: distinct devices' polls join one batch with every
row's own time, a point polled again starts the next batch, and the sequence numbers stay
consecutive; and a commit running while a connection starts hands nothing out twice."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gateway.clock import SystemClock
from gateway.contract.wire import Channel, MessageKind, TelemetryBatch, decode
from gateway.field.sample import Quality, Sample
from gateway.uplink.committer import Committer, Window
from gateway.uplink.items import Item
from gateway.uplink.outbox import Outbox
from gateway.uplink.replay import ReplayPacer
from tests.uplink.conftest import Broker, Subscriber
from tests.uplink.test_publisher import of, running, settings, until

G = Quality.GOOD


async def test_the_polls_of_one_interval_share_a_message(
        broker: Broker, subscribers: list[Subscriber], tmp_path: Path) -> None:
    sub = Subscriber(broker.port)
    subscribers.append(sub)
    s = settings(broker.port, outbox={"commit_interval": "1s"})
    async with running(s, tmp_path / "state") as r:
        up = r.uplink
        await until(lambda: up.status().connected, what="connect")
        await until(lambda: up.status().outbox.depth == 0 and up.status().queued == 0,
                    what="births delivered")
        # and the writer thread asleep with nothing due soon (the births' acknowledgements
        # settled; the confirmed rows' deletes wait 20 s): woken between two polls below, it
        # would take the first ones alone (make test on a loaded machine: queued 1, not 2)
        writer = up.committer
        await until(lambda: writer._sleeping and (
            writer._wake_at is None or writer._wake_at - time.monotonic() > 5), what="idle")
        ts = time.time_ns()
        polls = [[Sample(f"dev-{d}.t", 20.0 + d, ts + 1000 * d + 7, G),
                  Sample(f"dev-{d}.h", 40 + d, ts + 1000 * d, Quality.STALE)]
                 for d in range(4)]
        again = [Sample("dev-1.t", 30.5, ts + 9000, G)]  # polled again: the next message
        for poll in [*polls, again]:
            up.on_samples(poll)  # one commit interval (1 s): all buffered together
        assert up.status().queued == 2
        await until(lambda: len(sub.snapshot(of("telemetry"))) == 2, what="two messages")
        await until(lambda: up.status().outbox.depth == 0, what="all acknowledged")

        batches = [decode(m.topic, m.payload) for m in sub.snapshot(of("telemetry"))]
        assert all(isinstance(b, TelemetryBatch) for b in batches)
        first, second = batches
        assert isinstance(first, TelemetryBatch) and isinstance(second, TelemetryBatch)
        assert (first.seq, second.seq) == (1, 2)
        assert first.t0 == ts  # the oldest sample of all four polls
        assert first.to_samples() == [s for poll in polls for s in poll]
        assert second.to_samples() == again
        assert up.filter.passed == 9


async def test_a_commit_running_while_a_connection_starts_hands_nothing_out_twice(
        tmp_path: Path) -> None:
    """The race the full test run found: a commit that took its items before `start_session`
    and handed its window out after it (under the new session's epoch) published them, and
    the session's start then handed everything out again. Driven step by step: the commit's
    store starts the session, as the event loop can at that moment."""
    clock = SystemClock()
    topics = {ch: f"roomwarden/s/g/{ch.value}" for ch in Channel}
    committer = Committer(Outbox(tmp_path / "outbox.sqlite", clock=clock),
                          ReplayPacer(clock), clock, site="s", gateway="g", topics=topics,
                          catalog="0123456789abcdef", numbered=False, on_reject=print)
    windows: list[Window] = []
    # no writer thread: the writer's steps are driven here, in the order of the race
    committer._loop, committer._deliver = asyncio.get_running_loop(), windows.append
    epoch = committer.start_session([])
    committer._work()
    committer.want(20)
    assert committer.add_samples([Sample("d.t", 21.5, time.time_ns(), G)], clock.now_ns())
    store = committer._store

    def store_while_a_connection_starts(item: Item) -> None:
        store(item)
        committer.start_session([])  # what the loop does on a CONNACK, meanwhile
        committer.want(20)

    committer._store = store_while_a_connection_starts
    committer._work()  # commits the sample; the new session's start is pending
    committer._store = store
    committer.want(20)  # the loop published whatever came and has room again
    committer._work()  # the session's start: hands out what is stored, once
    await asyncio.sleep(0.05)  # the windows reach the loop
    handed = [m for w in windows for m in w.messages if m.kind is MessageKind.TELEMETRY]
    assert len(handed) == 1 and windows[-1].epoch == epoch + 1
    committer.outbox.close()
