"""A poll's samples to each of their consumers (the latest values, the rules, the flight
recorder, the uplink, extra sinks), each on its own: one that raises — a bug — costs only itself
that batch, and the others still get it (data that is never lost). A failure is counted per
consumer and logged with its traceback at the 1st, 10th, 100th … of that consumer, so a bug
that fails every batch does not flood the log at ten polls a second."""

from __future__ import annotations

import logging
from collections.abc import Callable

from gateway.field.sample import Sample

log = logging.getLogger("roomwarden.gateway")


class SampleFanOut:
    __slots__ = ("failures",)

    def __init__(self) -> None:
        self.failures: dict[str, int] = {}
        """Batches each consumer failed on, by name."""

    def deliver(self, consumer: str, consume: Callable[[list[Sample]], object],
                batch: list[Sample]) -> None:
        try:
            consume(batch)
        except Exception as exc:
            count = self.failures.get(consumer, 0) + 1
            self.failures[consumer] = count
            if str(count).rstrip("0") == "1":  # 1, 10, 100 …
                log.error("event=sample_consumer_failed consumer=%s failures=%d", consumer,
                          count, exc_info=exc)
