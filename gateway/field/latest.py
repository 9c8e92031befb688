"""The latest sample of every point, and its last good one: what the panel and status show."""

from __future__ import annotations

from gateway.field.sample import Quality, Sample


class LatestSamples:
    def __init__(self) -> None:
        self.latest: dict[str, Sample] = {}
        self.last_good: dict[str, Sample] = {}
        self.batches = 0
        self.samples = 0

    def update(self, batch: list[Sample]) -> None:
        """A sample sink: keep the newest sample per point, and the newest good one apart."""
        latest, last_good = self.latest, self.last_good
        for sample in batch:
            latest[sample.point] = sample
            if sample.quality is Quality.GOOD:
                last_good[sample.point] = sample
        self.batches += 1
        self.samples += len(batch)
