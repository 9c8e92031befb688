"""The latest sample of every point, and its last good one: what the panel and status show."""

from __future__ import annotations

from gateway.clock import Clock, SystemClock
from gateway.field.sample import Quality, Sample


class LatestSamples:
    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self.latest: dict[str, Sample] = {}
        self.last_good: dict[str, Sample] = {}
        self.arrived: dict[str, float] = {}
        """When each point's latest sample arrived (monotonic): what tells a sample polled
        after an event from one polled before it (the output driver's drift repair), since a
        sample's wall-clock stamp goes back with the clock (docs/time.md)."""
        self.batches = 0
        self.samples = 0

    def update(self, batch: list[Sample]) -> None:
        """A sample sink: keep the newest sample per point, and the newest good one apart."""
        latest, last_good, arrived = self.latest, self.last_good, self.arrived
        now = self.clock.monotonic()
        for sample in batch:
            latest[sample.point] = sample
            arrived[sample.point] = now
            if sample.quality is Quality.GOOD:
                last_good[sample.point] = sample
        self.batches += 1
        self.samples += len(batch)
