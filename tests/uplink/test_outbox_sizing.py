"""A 24-hour outage of a typical site fits the default disk budget.

Typical site: 200 points polled every 10 s; after the exception filter 60 % of them report
every cycle (they move by more than their deadband), the other 40 % only on the 5-minute
heartbeat. One telemetry batch per poll cycle. We put one simulated hour into a real outbox,
measure the bytes per stored sample (accounted and on disk) and extrapolate to 24 h.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.contract.wire import MessageKind, PointCatalog, PointMeta, TelemetryBatch, encode
from gateway.field.points import scaled
from gateway.field.sample import Quality, Sample
from gateway.uplink.exception_filter import ExceptionFilter, ExceptionPolicy
from gateway.uplink.outbox import DEFAULT_BUDGET_BYTES, Outbox

POINTS, MOVING_SHARE, CYCLE_S, HEARTBEAT_S = 200, 0.6, 10.0, 300.0
QUANTITIES = ["temperature", "relative_humidity", "phase_current", "phase_voltage",
              "battery_soc"]


def site_points() -> list[tuple[str, str]]:
    """(point id, quantity): 20 devices of 10 points, realistic names."""
    return [(f"dev-{d:02d}.{QUANTITIES[p % 5]}_{p}", QUANTITIES[p % 5])
            for d in range(20) for p in range(10)]


def simulate_hour(tmp_path: Path) -> tuple[Outbox, int, int]:
    clock = ManualClock()
    ob = Outbox(tmp_path / "outbox.db", clock=clock)
    points = site_points()
    moving = {pid for pid, _q in points[: int(POINTS * MOVING_SHARE)]}
    filt = ExceptionFilter(ExceptionPolicy(deadband=0.5, max_interval=HEARTBEAT_S), clock)
    catalog = PointCatalog.build(site="bj-yizhuang-idc", gateway="gw-bj-yz-01",
                                 produced=clock.now_ns(), points={
                                     pid: PointMeta(device=pid.split(".")[0], room="room-1",
                                                    quantity=q, unit="V")
                                     for pid, q in points})
    topic = "roomwarden/bj-yizhuang-idc/gw-bj-yz-01/telemetry"
    samples_stored = 0
    for cycle in range(int(3600 / CYCLE_S)):
        raw = []
        for i, (pid, _q) in enumerate(points):
            # scaled registers as acquisition yields them (gateway.field.points.scaled)
            reg = 2000 + i + (cycle % 2) * 7 if pid in moving else 2000 + i
            raw.append(Sample(pid, scaled(reg, 0.1, 0.0), clock.now_ns() + i * 3_000_000,
                              Quality.GOOD))
        passed = filt.filter(raw)
        batch = TelemetryBatch.from_samples(
            site="bj-yizhuang-idc", gateway="gw-bj-yz-01", seq=ob.next_seq(),
            produced=clock.now_ns(), samples=passed, catalog=catalog.catalog)
        ob.put(MessageKind.TELEMETRY, topic, encode(batch))
        samples_stored += len(passed)
        clock.advance(CYCLE_S)
        ob.maybe_flush()
    ob.flush()
    return ob, samples_stored, int(3600 / CYCLE_S)


@pytest.mark.slow
def test_a_day_of_outage_fits_the_default_budget(tmp_path: Path) -> None:
    ob, samples, batches = simulate_hour(tmp_path)
    assert batches == 360
    quiet = POINTS * (1 - MOVING_SHARE)
    assert samples == batches * POINTS * MOVING_SHARE + quiet * 3600 / HEARTBEAT_S
    accounted_per_sample = ob.stored_bytes() / samples
    db = sqlite3.connect(ob.path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size, pages, free = (db.execute(f"PRAGMA {p}").fetchone()[0]
                              for p in ("page_size", "page_count", "freelist_count"))
    db.close()
    disk_per_sample = (pages - free) * page_size / samples
    day = samples * 24
    print(f"\nsamples/h {samples}, accounted {accounted_per_sample:.1f} B/sample, "
          f"on disk {disk_per_sample:.1f} B/sample, 24 h on disk "
          f"{day * disk_per_sample / 2**20:.1f} MiB of {DEFAULT_BUDGET_BYTES / 2**20:.0f} MiB")
    assert DEFAULT_BUDGET_BYTES == 256 * 2**20
    assert day * disk_per_sample <= DEFAULT_BUDGET_BYTES
    assert day * accounted_per_sample <= DEFAULT_BUDGET_BYTES
    # the accounting the budget enforces does not undercount what the disk really holds
    assert accounted_per_sample * 0.9 <= disk_per_sample <= accounted_per_sample * 1.05
    assert day * disk_per_sample * 3 <= DEFAULT_BUDGET_BYTES  # in fact more than 3 days fit
    ob.close()
