"""The latest sample of every point: what the panel and status show, and what the output
driver reads its coils' polls from."""

from __future__ import annotations

from gateway.clock import Clock, SystemClock
from gateway.field.sample import Sample


class LatestSamples:
    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self.latest: dict[str, Sample] = {}
        self.arrived: dict[str, float] = {}
        """When each point's latest sample arrived (monotonic): what tells a sample polled
        after an event from one polled before it (the output driver's drift repair), since a
        sample's wall-clock stamp goes back with the clock (docs/time.md)."""
        self.batches = 0
        self.samples = 0

    def update(self, batch: list[Sample]) -> None:
        """A sample sink: keep the newest sample per point (and when it arrived)."""
        latest, arrived = self.latest, self.arrived
        now = self.clock.monotonic()
        for sample in batch:
            point = sample[0]  # (`.point` is a property: a call per sample)
            latest[point] = sample
            arrived[point] = now
        self.batches += 1
        self.samples += len(batch)
