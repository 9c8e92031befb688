"""The central incident store's budgets are shared out per gateway (gateway.ingest.incident_room):
one gateway's records, or its chunks of records that never complete, push out only its own;
a record too large for its gateway's share is kept whole in a bounded quarantine.

The central audit: 20 first chunks of never-completing records from one gateway pruned another
gateway's complete record and then had its next record dead-lettered as "store is full"; 60 tiny
records from one gateway pushed another's out of `max_incidents`. Real SQLite stores, small
budgets; the end-to-end case through Mosquitto is tests/ingest/test_incident_shares_ingest.py.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.contract import wire as c
from gateway.ingest.incidents import (
    CentralIncidents,
    CentralIncidentSettings,
    IncidentChunkError,
    IncidentQuarantined,
)
from tests.ingest.test_incident_store import SITE, chunks_of, record_file

KiB, MiB = 1024, 2**20


def ident(n: int) -> str:
    return f"20261203T0312{n // 60:02d}Z-batt-3f-{n}"


def record(gw: str, n: int, noise: int = 0) -> tuple[str, bytes]:
    """Record `n` of gateway `gw`: `noise` bytes make it about that large (random samples)."""
    return ident(n), record_file(ident(n), noise=noise + n if noise else 0, gateway=gw)


def first_chunk(gw: str, n: int, noise: int) -> c.IncidentChunk:
    incident_id, data = record(gw, n, noise)
    chunks = chunks_of(data, incident_id=incident_id, gateway=gw)
    assert len(chunks) > 1
    return chunks[0]


def send(store: CentralIncidents, gw: str, n: int, noise: int = 0, now: int = 0) -> str:
    """All chunks of record `n` of `gw`; the last outcome."""
    incident_id, data = record(gw, n, noise)
    outcome = ""
    for chunk in chunks_of(data, incident_id=incident_id, gateway=gw):
        outcome = store.add(chunk, now)
    return outcome


def held(store: CentralIncidents) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for row in store.summaries():
        out.setdefault(row["gateway"], []).append(row["id"])
    return out


def used(store: CentralIncidents) -> int:
    waiting = sum(c.CHUNK_BYTES * int(w["have"]) for w in store.waiting())  # (an upper bound)
    return sum(int(r["size"]) for r in store.summaries() if not r["quarantined"]) + waiting


def test_waiting_chunks_of_one_gateway_evict_nothing_of_another(tmp_path: Path) -> None:
    """The audit's first case at 2 MiB: gw-bad's 12 first chunks (3 MiB) of records that never
    complete churn only its own waiting chunks; gw-good's record stays and its next is stored."""
    store = CentralIncidents(tmp_path / "i.sqlite", CentralIncidentSettings(max_bytes=2 * MiB))
    assert send(store, "gw-good", 1, noise=300_000, now=1) == "complete"
    for k in range(12):
        assert store.add(first_chunk("gw-bad", 100 + k, 600_000), 10 + k) == "stored"
    assert held(store) == {"gw-good": [ident(1)]}
    bad_waiting = [w["id"] for w in store.waiting()]
    assert bad_waiting == [ident(100 + k) for k in range(12)][-len(bad_waiting):]
    assert used(store) <= 2 * MiB  # (gw-bad may use what gw-good leaves free)
    assert send(store, "gw-good", 2, noise=300_000, now=30) == "complete"
    assert held(store) == {"gw-good": [ident(1), ident(2)]}
    assert store.read(ident(1), "gw-good")[2] == record("gw-good", 1, 300_000)[1]
    assert used(store) <= 2 * MiB


def test_many_small_records_of_one_gateway_leave_anothers(tmp_path: Path) -> None:
    """The audit's second case: 30 tiny records from gw-bad against max_incidents 10 leave
    gw-good's one record; a third gateway arriving later gets its share too."""
    store = CentralIncidents(tmp_path / "i.sqlite", CentralIncidentSettings(max_incidents=10))
    send(store, "gw-good", 1, now=1)
    for k in range(30):
        assert send(store, "gw-bad", 100 + k, now=10 + k) == "complete"
    kept = held(store)
    assert kept["gw-good"] == [ident(1)]
    assert kept["gw-bad"] == [ident(100 + k) for k in range(21, 30)]  # its newest 9
    for k in range(3):
        send(store, "gw-new", 200 + k, now=50 + k)
    kept = held(store)
    assert kept["gw-good"] == [ident(1)] and len(kept["gw-new"]) == 3
    assert sum(map(len, kept.values())) == 10
    one = CentralIncidents(tmp_path / "one.sqlite", CentralIncidentSettings(max_incidents=1))
    send(one, "gw-a", 1)
    send(one, "gw-b", 2)  # more gateways than records: still within max_incidents
    assert held(one) == {"gw-b": [ident(2)]}


def test_a_gateway_over_its_share_loses_its_own_incomplete_then_oldest(
        tmp_path: Path) -> None:
    """A 1 MiB store, records of ≈ 200 KB: gw-a alone may use all of it; when gw-b arrives,
    gw-a (over its new share) gives way — its incomplete record before its complete ones; once
    gw-b is over its own share, gw-b's own oldest go; when gw-c arrives, gw-a's oldest go."""
    store = CentralIncidents(tmp_path / "i.sqlite", CentralIncidentSettings(max_bytes=MiB))
    for n in (1, 2, 3):
        send(store, "gw-a", n, noise=180_000, now=n)
    store.add(first_chunk("gw-a", 4, 600_000), 4)  # never completes: 862 KB held
    send(store, "gw-b", 10, noise=180_000, now=10)  # 1,064 KB: gw-a gives way
    assert store.waiting() == []  # its incomplete record, not its oldest complete one
    assert held(store) == {"gw-a": [ident(1), ident(2), ident(3)], "gw-b": [ident(10)]}
    send(store, "gw-b", 11, noise=180_000, now=11)
    send(store, "gw-b", 12, noise=180_000, now=12)  # gw-b over ½ MiB: its own oldest goes
    assert held(store) == {"gw-a": [ident(1), ident(2), ident(3)],
                           "gw-b": [ident(11), ident(12)]}
    send(store, "gw-c", 20, noise=180_000, now=20)  # shares of ⅓: gw-a holds the most
    assert held(store) == {"gw-a": [ident(2), ident(3)], "gw-b": [ident(11), ident(12)],
                           "gw-c": [ident(20)]}
    assert used(store) <= MiB


def test_waiting_chunks_are_capped_per_gateway(tmp_path: Path) -> None:
    """max_record_bytes 512 KiB: a gateway's waiting chunks stay within 1 MiB, however much
    room the store has; its idlest incomplete versions go."""
    store = CentralIncidents(tmp_path / "i.sqlite", CentralIncidentSettings(
        max_record_bytes=512 * KiB))
    for k in range(8):
        store.add(first_chunk("gw-bad", 100 + k, 400_000), k)
    waiting = [w["id"] for w in store.waiting()]
    assert waiting == [ident(100 + k) for k in range(4, 8)]  # 4 × 256 KiB


def test_a_record_larger_than_its_share_is_quarantined_whole(tmp_path: Path) -> None:
    """Two gateways in 1 MiB: gw-b's 700 KB record does not fit its share (½ MiB). Each chunk
    is refused from the store proper (the ingest dead-letters it, so the gateway's outbox goes
    on), and the record is kept whole in the quarantine, readable like any other."""
    store = CentralIncidents(tmp_path / "i.sqlite", CentralIncidentSettings(
        max_bytes=MiB, max_record_bytes=MiB, quarantine_bytes=MiB))
    send(store, "gw-a", 1, noise=280_000)
    incident_id, data = record("gw-b", 10, 700_000)
    chunks = chunks_of(data, incident_id=incident_id, gateway="gw-b")
    for i, chunk in enumerate(chunks):
        with pytest.raises(IncidentQuarantined, match="kept whole in the quarantine") as info:
            store.add(chunk, 5)
        assert info.value.complete == (i == len(chunks) - 1)
    assert store.read(incident_id, "gw-b")[2] == data
    assert {(r["gateway"], r["quarantined"]) for r in store.summaries()} == {
        ("gw-a", 0), ("gw-b", 1)}
    assert store.add(chunks[0], 6) == "duplicate"  # a re-delivery changes nothing
    # the quarantine is bounded: gw-b's next large record replaces its own older one
    next_id, next_data = record("gw-b", 11, 700_000)
    for chunk in chunks_of(next_data, incident_id=next_id, gateway="gw-b"):
        with pytest.raises(IncidentQuarantined):
            store.add(chunk, 7)
    assert held(store) == {"gw-a": [ident(1)], "gw-b": [next_id]}
    # gw-c's large record fits neither its share of the store nor of the full quarantine:
    # refused (the gateway keeps its copy), and nobody's record went for it
    other_id, other = record("gw-c", 20, 700_000)
    with pytest.raises(IncidentChunkError, match="fit neither") as refused:
        for chunk in chunks_of(other, incident_id=other_id, gateway="gw-c"):
            try:
                store.add(chunk, 8)
            except IncidentQuarantined:
                continue
    assert not isinstance(refused.value, IncidentQuarantined)
    assert held(store) == {"gw-a": [ident(1)], "gw-b": [next_id]}
    assert [w for w in store.waiting() if w["gateway"] == "gw-c"] == []
    with pytest.raises(ValueError, match="quarantine_bytes 1048576 must be at least"):
        CentralIncidentSettings(max_record_bytes=2 * MiB, quarantine_bytes=MiB)


def test_a_store_made_before_the_quarantine_is_read_and_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE chunks (site TEXT NOT NULL, gateway TEXT NOT NULL, id TEXT NOT NULL,
            sha256 TEXT NOT NULL, idx INTEGER NOT NULL, count INTEGER NOT NULL,
            size INTEGER NOT NULL, saved INTEGER NOT NULL, received INTEGER NOT NULL,
            data BLOB NOT NULL, UNIQUE (site, gateway, id, sha256, idx));
        CREATE TABLE incidents (site TEXT NOT NULL, gateway TEXT NOT NULL, id TEXT NOT NULL,
            sha256 TEXT NOT NULL, size INTEGER NOT NULL, saved INTEGER NOT NULL,
            received INTEGER NOT NULL, status TEXT, room TEXT, severity TEXT, rule TEXT,
            subject TEXT, trigger_ts INTEGER, drill INTEGER NOT NULL DEFAULT 0,
            record BLOB NOT NULL, UNIQUE (site, gateway, id));""")
    data = record_file(ident(1), gateway="gw-a")
    db.execute("INSERT INTO incidents (site, gateway, id, sha256, size, saved, received, "
               "record) VALUES (?, 'gw-a', ?, 'x', ?, 1, 1, ?)", (SITE, ident(1), len(data),
                                                                   data))
    db.commit()
    db.close()
    reader = CentralIncidents(path, readonly=True)  # `incident --central` before the upgrade
    assert [(r["id"], r["quarantined"]) for r in reader.summaries()] == [(ident(1), 0)]
    reader.close()
    store = CentralIncidents(path)
    assert send(store, "gw-b", 2) == "complete"
    assert held(store) == {"gw-a": [ident(1)], "gw-b": [ident(2)]}
    store.close()
