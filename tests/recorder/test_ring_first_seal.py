"""A ring with no sample bound (an incident's copy: max_samples 10**9) reserves a bounded store
(at its `PROBE`th sample, topped up at its first seal); it used to reserve room for 10**9
samples (~1.4 GB) and stall the gateway's event loop as the incident opened
(tests/faults/test_uplink_faults.py hung there)."""

from __future__ import annotations

from gateway.field.sample import Quality
from gateway.recorder.ring import CHUNK, PointRing


def test_an_unbounded_ring_reserves_a_bounded_store_and_keeps_every_sample() -> None:
    ring = PointRing(3600.0, 10**9)
    for i in range(3 * CHUNK):
        ring.append(1_700_000_000_000_000_000 + i * 10**9, 20.0 + (i % 7) * 0.01, Quality.GOOD)
    assert len(ring) == 3 * CHUNK
    assert ring.live_bytes() < 1 << 20  # not room for 10**9 samples (~1.4 GB)
    got = ring.samples()
    assert [r.value for r in got] == [20.0 + (i % 7) * 0.01 for i in range(3 * CHUNK)]
