"""The polls of one commit interval share a telemetry message (gateway.uplink.committer's
`add_samples`), against a real mosquitto: distinct devices' polls join one batch with every
row's own time, a point polled again starts the next batch, and the sequence numbers stay
consecutive."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.contract.wire import TelemetryBatch, decode
from gateway.field.sample import Quality, Sample
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
