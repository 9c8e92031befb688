"""The ingest's catalog store stays bounded against a gateway that floods its `meta` topic with
distinct catalogs (audit D4: 40 catalogs of 1.6 MB took the ingest from 67 to 405 MB and its
store to 80 MB), through a real mosquitto into a real VictoriaMetrics: per gateway the newest
few by arrival, and a byte budget in all, in memory and on disk; the newest catalog still tags
new batches, another gateway's catalog survives the flood, and a batch naming an evicted
catalog waits for it (the ingest asks the gateway) instead of being lost."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.contract import wire as c
from gateway.field.sample import Quality, Sample
from gateway.ingest import catalogs
from gateway.ingest.service import IngestService
from tests.fixtures.services import Broker, Subscriber, Victoria, wait_for
from tests.ingest.test_service import NOW, SITE, Gateway, make_settings

FLOODER, BIG, NEIGHBOUR = "gw-flood", "gw-big", "gw-quiet"
BUDGET = 600_000
"""The byte budget for this test (MAX_CATALOG_BYTES, 64 MiB, would take 30 s of catalogs)."""
FLOOD = 16
"""Catalogs of 1,000 points (about 110 KB stored) the flooder publishes: more than its
per-gateway limit, within the budget."""
BIG_FLOOD = 3
"""Then catalogs of 1,500 points (about 165 KB) another gateway publishes: past the budget."""


@pytest.fixture
def gateway(broker: Broker) -> Iterator[Gateway]:
    gw = Gateway(broker)
    yield gw
    gw.close()


def catalog(gateway: str, n: int, points: int = 1_000) -> c.PointCatalog:
    """Catalog `n` of `gateway`: its points sit in room `room-<n>` (so the tags tell which
    catalog wrote a batch)."""
    return c.PointCatalog.build(site=SITE, gateway=gateway, produced=NOW + n, points={
        f"th-{i}.temperature": c.PointMeta(device=f"th-{i}", room=f"room-{n}",
                                           quantity="temperature", unit="°C")
        for i in range(points)})


def batch(gateway: str, cat: c.PointCatalog, seq: int, value: float) -> c.TelemetryBatch:
    ts = NOW + seq * 10**9
    return c.TelemetryBatch.from_samples(
        site=SITE, gateway=gateway, seq=seq, produced=ts, catalog=cat.catalog,
        samples=[Sample("th-0.temperature", value, ts, Quality.GOOD)])


def rooms(vm: Victoria, gateway: str) -> dict[float, str]:
    """value → room tag of the `temperature_value` samples of `gateway`."""
    out: dict[float, str] = {}
    for s in vm.export(f'{{__name__="temperature_value",gateway="{gateway}"}}'):
        for v in s["values"]:
            out[v] = s["metric"]["room"]
    return out


def on_disk(path: Path) -> dict[str, tuple[int, int]]:
    """gateway → (catalogs, stored bytes) in the SQLite file."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {gw: (n, size) for gw, n, size in db.execute(
            "SELECT gateway, COUNT(*), SUM(length(CAST(points AS BLOB))) FROM catalogs "
            "GROUP BY gateway")}
    finally:
        db.close()


def test_a_flood_of_catalogs_keeps_the_store_bounded(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="roomwarden.ingest")
    monkeypatch.setattr(catalogs, "MAX_CATALOG_BYTES", BUDGET, raising=False)
    limit = getattr(catalogs, "MAX_CATALOGS_PER_GATEWAY", 4)
    settings = make_settings(tmp_path, broker, victoria, catalog_wait="30s",
                             request_state_interval="1s")
    commands = Subscriber(broker.port, f"roomwarden/{SITE}/{FLOODER}/cmd")
    service = IngestService(settings)
    service.start()
    flood = [catalog(FLOODER, n) for n in range(FLOOD)]
    big = [catalog(BIG, 200 + n, points=1_500) for n in range(BIG_FLOOD)]
    quiet = catalog(NEIGHBOUR, 100, points=50)
    try:
        wait_for(lambda: bool(service.status()["subscribed"]), what="ingest subscribed")
        gateway.send(quiet)
        for cat in flood + big:
            gateway.send(cat)
        wait_for(lambda: service.status()["acked"] == FLOOD + BIG_FLOOD + 1, timeout=60,
                 what="every catalog received")
        assert service.status()["catalogs_added"] == FLOOD + BIG_FLOOD + 1

        # within the limits on disk ...
        disk = on_disk(settings.catalog_store)
        assert all(n <= limit for n, _ in disk.values()), disk
        assert sum(size for _, size in disk.values()) <= BUDGET, disk
        # ... and in memory
        assert service.status()["catalogs"] == sum(n for n, _ in disk.values())
        store = service._catalogs
        held = store.entries()
        assert store.bytes == sum(h.size for h in held.values()) <= BUDGET
        assert len(store) == len(held) == service.status()["catalogs"]
        kept: dict[str, list[str]] = {}
        for key in sorted(held, key=lambda k: held[k].arrival):
            kept.setdefault(key[1], []).append(key[2])
        assert all(1 <= len(digests) <= limit for digests in kept.values()), kept
        # ... each gateway's newest kept; the flooders pay for their floods, the neighbour's
        # catalog stays
        for gw, sent in ((FLOODER, flood), (BIG, big)):
            assert kept[gw] == [x.catalog for x in sent[-len(kept[gw]):]]
        assert kept[NEIGHBOUR] == [quiet.catalog]
        assert len(kept[FLOODER]) < limit, "the byte budget evicted the flooder's own"
        assert store.get(SITE, FLOODER, flood[0].catalog) is None
        assert {gw: n for gw, (n, _) in disk.items()} == {gw: len(d) for gw, d in kept.items()}
        assert sum(size for _, size in disk.values()) == store.bytes

        # one line per kind of eviction, not one per catalog evicted
        evicted = [r.getMessage() for r in caplog.records
                   if "event=catalog_evicted" in r.getMessage()]
        assert {line.split(" reason=")[1].split()[0] for line in evicted} == {
            "max_per_gateway", "max_bytes"}
        assert len(evicted) == 2, evicted

        # the newest catalog (and the neighbour's) tag new batches
        gateway.send(batch(FLOODER, flood[-1], 1, 1.0))
        gateway.send(batch(NEIGHBOUR, quiet, 1, 2.0))
        wait_for(lambda: service.status()["written_points"] == 2, what="2 batches written")
        assert rooms(victoria, FLOODER) == {1.0: f"room-{FLOOD - 1}"}
        assert rooms(victoria, NEIGHBOUR) == {2.0: "room-100"}

        # a batch naming an evicted catalog waits, the ingest asks the gateway for it, and it
        # is written when the catalog comes again — not lost, not written with other tags
        gateway.send(batch(FLOODER, flood[0], 2, 3.0))
        wait_for(lambda: service.status()["parked"] == 1, what="the batch waiting")
        wait_for(lambda: any(isinstance(c.decode(m.topic, m.payload), c.RequestState)
                             for m in commands.snapshot()), what="request_state sent")
        gateway.send(flood[0])
        wait_for(lambda: service.status()["written_points"] == 3, what="the batch written")
        assert rooms(victoria, FLOODER) == {1.0: f"room-{FLOOD - 1}", 3.0: "room-0"}
        assert service.status()["dead_lettered"] == 0 and service.status()["parked"] == 0
        after = set(store.entries())
        assert store.bytes <= BUDGET and (SITE, FLOODER, flood[0].catalog) in after
        assert all(sum(k[1] == gw for k in after) <= limit for gw in (FLOODER, BIG, NEIGHBOUR))
    finally:
        service.stop()
        commands.close()

    # the file holds what the store kept (freed pages reused: no growth with the flood)
    disk = on_disk(settings.catalog_store)
    assert sum(n for n, _ in disk.values()) == len(after)
    assert sum(size for _, size in disk.values()) <= BUDGET
    largest = max(len(c.encode(x)) for x in big)
    size = settings.catalog_store.stat().st_size
    assert size < BUDGET + 2 * largest, f"{size} bytes on disk"  # all of them: 2.3 MB

    # a restarted ingest loads what was kept, within the limits
    again = IngestService(settings)
    try:
        assert set(again._catalogs.entries()) == after
        assert again._catalogs.bytes <= BUDGET
    finally:
        again.stop()
