"""The ingest's request_state throttle (gateway.ingest.staterequests): once per interval per
gateway, and a bounded memory of who was asked (the central audit: the map of asked gateways
was never pruned, so batches naming made-up gateways grew it without end)."""

from __future__ import annotations

from gateway.ingest.staterequests import RequestThrottle


def test_a_gateway_is_asked_at_most_once_per_interval() -> None:
    throttle = RequestThrottle(5.0)
    assert throttle.take("s", "gw-1", 100.0) == 1
    assert throttle.take("s", "gw-1", 104.9) is None
    assert throttle.take("s", "gw-2", 104.9) == 2  # another gateway is not held back
    assert throttle.take("s", "gw-1", 105.0) == 3


def test_who_was_asked_is_remembered_within_a_bound() -> None:
    throttle = RequestThrottle(5.0, limit=100)
    for n in range(20_000):  # made-up gateways, all within one interval
        assert throttle.take("s", f"gw-{n}", 1000.0 + n * 1e-5) is not None
    assert len(throttle) <= 100
    assert throttle.take("s", "gw-19999", 1000.3) is None  # the newest still held back
    # once the interval has passed, the stale entries go by themselves
    throttle.take("s", "late", 2000.0)
    assert len(throttle) == 1
