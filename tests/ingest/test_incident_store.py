"""Incident records on the wire and in the central store: a record file split into chunks
(gateway.contract.incidents) and put together again by the ingest's store
(gateway.ingest.incidents) — in any order, any number of times, into the same bytes; checked,
bounded, and refused with the reason when it does not fit."""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.contract import wire as c
from gateway.ingest.incidents import CentralIncidents, CentralIncidentSettings, IncidentChunkError

SITE, GW = "lab", "gw-1"
INCIDENT = "20261203T031200Z-batt-3f-4711"


@functools.cache
def record_file(incident_id: str = INCIDENT, *, noise: int = 0, gateway: str = GW,
                **extra: Any) -> bytes:
    """A record file as the gateway stores it; `noise` random bytes of samples make it span
    several chunks (random digits do not compress)."""
    rnd = random.Random(noise)
    record = {"format": c.INCIDENT_FORMAT, "id": incident_id, "status": "closed",
              "kind": "alarm", "room": "batt-3f", "gateway": gateway, "site": SITE,
              "trigger": {"rule": "fire.smoke_coincidence", "subject": "batt-3f",
                          "severity": "critical", "ts": 1_764_731_520_000_000_000},
              "points": {"th-1.temperature": {
                  "v": [rnd.random() for _ in range(noise // 8)]}}, **extra}
    return gzip.compress(json.dumps(record).encode(), 6, mtime=0)


def chunks_of(data: bytes, *, saved: int = 1, incident_id: str = INCIDENT,
              gateway: str = GW) -> list[c.IncidentChunk]:
    return c.split_record(data, site=SITE, gateway=gateway, incident_id=incident_id,
                          status="closed", saved=saved)


@pytest.fixture
def store(tmp_path: Path) -> CentralIncidents:
    return CentralIncidents(tmp_path / "incidents.sqlite")


def test_a_record_travels_in_chunks_within_the_payload_limit() -> None:
    data = record_file(noise=700_000)
    chunks = chunks_of(data)
    assert len(chunks) >= 3
    for chunk in chunks:
        topic = c.Topic(SITE, GW, c.Channel.INCIDENTS)
        payload = c.encode(chunk)
        assert len(payload) < c.MAX_PAYLOAD_BYTES
        assert c.decode(str(topic), payload) == chunk
    assert b"".join(c.chunk_bytes(k) for k in chunks) == data
    assert {k.sha256 for k in chunks} == {hashlib.sha256(data).hexdigest()}


@pytest.mark.parametrize(("change", "reason"), [
    ({"count": 2}, "count 2 does not fit size"),
    ({"index": 1}, "index 1 is not below count 1"),
    ({"data": "QUJD"}, "needs"),
    ({"data": "!!!!"}, "String should match pattern"),
    ({"id": "../etc/passwd"}, "id"),
    ({"size": c.MAX_INCIDENT_BYTES + 1}, "size"),
])
def test_a_chunk_that_does_not_fit_its_place_is_refused(change: dict[str, Any],
                                                        reason: str) -> None:
    [chunk] = chunks_of(record_file())
    payload = {**json.loads(c.encode(chunk)), **change}
    with pytest.raises(c.ContractError, match=reason):
        c.decode(str(c.Topic(SITE, GW, c.Channel.INCIDENTS)), json.dumps(payload).encode())


def test_a_record_too_large_for_the_contract_is_not_split() -> None:
    with pytest.raises(c.ContractError, match="exceed"):
        chunks_of(b"x" * (c.MAX_INCIDENT_BYTES + 1))
    with pytest.raises(c.ContractError, match="empty"):
        chunks_of(b"")


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(order=st.randoms(use_true_random=False), repeats=st.lists(st.integers(0, 3),
                                                                   min_size=3, max_size=3))
def test_chunks_in_any_order_and_repeated_give_the_same_record_once(
        tmp_path_factory: pytest.TempPathFactory, order: random.Random,
        repeats: list[int]) -> None:
    data = record_file(noise=560_000)
    chunks = chunks_of(data)
    assert len(chunks) == 3
    sent = [k for k, n in zip(chunks, repeats, strict=True) for _ in range(n + 1)]
    order.shuffle(sent)
    central = CentralIncidents(tmp_path_factory.mktemp("c") / "incidents.sqlite")
    outcomes = [central.add(k, now_ns=i) for i, k in enumerate(sent)]
    assert outcomes.count("complete") == 1
    assert set(outcomes) <= {"stored", "complete", "duplicate"}
    assert central.read(INCIDENT) == (SITE, GW, data)
    assert [r["id"] for r in central.summaries()] == [INCIDENT]
    assert central.waiting() == []
    central.close()


def test_the_summary_is_kept_for_listing(store: CentralIncidents) -> None:
    for chunk in chunks_of(record_file(kind="drill")):  # a live drill's record
        store.add(chunk, 5)
    [row] = store.summaries()
    assert (row["site"], row["gateway"], row["status"], row["room"], row["severity"],
            row["rule"], row["drill"]) == (SITE, GW, "closed", "batt-3f", "critical",
                                           "fire.smoke_coincidence", 1)
    assert store.load(INCIDENT)["trigger"]["subject"] == "batt-3f"


def test_a_partial_record_waits_and_says_so(store: CentralIncidents) -> None:
    chunks = chunks_of(record_file(noise=300_000))
    assert store.add(chunks[1], 1) == "stored"
    assert store.waiting() == [{"site": SITE, "gateway": GW, "id": INCIDENT, "have": 1,
                                "count": 2}]
    with pytest.raises(IncidentChunkError, match="no incident"):
        store.read(INCIDENT)


def test_a_later_version_replaces_an_earlier_one_never_the_reverse(
        store: CentralIncidents) -> None:
    old, new = record_file(), record_file(status_note="resent")
    for chunk in chunks_of(new, saved=20):
        assert store.add(chunk, 1) == "complete"
    for chunk in chunks_of(old, saved=10):
        assert store.add(chunk, 2) == "superseded"
    assert store.read(INCIDENT)[2] == new
    newest = record_file(status_note="newest")
    assert [store.add(k, 3) for k in chunks_of(newest, saved=30)] == ["complete"]
    assert store.read(INCIDENT)[2] == newest


def test_a_corrupt_record_is_refused_and_its_chunks_dropped(store: CentralIncidents) -> None:
    good = record_file(noise=300_000)
    first, last = chunks_of(good)
    # the same layout and hash, other bytes in the last chunk: it does not check
    forged = c.IncidentChunk.model_validate({
        **last.model_dump(), "data": c.split_record(
            bytes(len(good)), site=SITE, gateway=GW, incident_id=INCIDENT, status="closed",
            saved=1)[1].data})
    store.add(first, 1)
    with pytest.raises(IncidentChunkError, match="does not match its size and sha256"):
        store.add(forged, 2)
    assert store.waiting() == [] and store.summaries() == []
    # the gateway's copy sent again arrives whole
    assert [store.add(k, 3) for k in (first, last)] == ["stored", "complete"]
    assert store.read(INCIDENT)[2] == good


def test_a_record_that_is_not_an_incident_is_refused(store: CentralIncidents) -> None:
    for data, reason in ((gzip.compress(b'{"format": "other"}'), "is not a roomwarden"),
                         (b"not gzip at all", "cannot be read"),
                         (record_file(gateway="gw-2"), "names")):
        [chunk] = chunks_of(data)
        with pytest.raises(IncidentChunkError, match=reason):
            store.add(chunk, 1)
    assert store.summaries() == []


def test_a_changed_chunk_of_the_same_version_is_refused(store: CentralIncidents) -> None:
    first, _ = chunks_of(record_file(noise=300_000))
    store.add(first, 1)
    other = first.model_copy(update={"data": base64.b64encode(bytes(c.CHUNK_BYTES)).decode()})
    with pytest.raises(IncidentChunkError, match="differs"):
        store.add(other, 2)


@pytest.mark.slow
def test_bounds_record_size_count_and_disk_budget(tmp_path: Path) -> None:
    small = CentralIncidents(tmp_path / "a.sqlite", CentralIncidentSettings(
        max_record_bytes=64 * 1024))
    [big, _] = chunks_of(record_file(noise=300_000))
    with pytest.raises(IncidentChunkError, match="exceed max_record_bytes"):
        small.add(big, 1)

    few = CentralIncidents(tmp_path / "b.sqlite", CentralIncidentSettings(max_incidents=2))
    ids = [f"20261203T03120{i}Z-batt-3f-{i}" for i in range(3)]
    for i, incident_id in enumerate(ids):
        [chunk] = chunks_of(record_file(incident_id), incident_id=incident_id)
        few.add(chunk, i)
    assert [r["id"] for r in few.summaries()] == ids[1:]  # the oldest received went

    tight = CentralIncidents(tmp_path / "c.sqlite", CentralIncidentSettings(
        max_bytes=2**20))
    for i in range(3):  # ≈ 300-400 KiB each: the oldest goes to make room
        incident_id = f"20261203T03120{i}Z-batt-3f-{i}"
        for chunk in chunks_of(record_file(incident_id, noise=400_000 + i),
                               incident_id=incident_id):
            tight.add(chunk, i)
    kept = [r["id"] for r in tight.summaries()]
    assert kept[-1].endswith("-2") and len(kept) < 3
    assert sum(r["size"] for r in tight.summaries()) <= 2**20

    full = CentralIncidents(tmp_path / "d.sqlite", CentralIncidentSettings(max_bytes=2**20))
    ids = [f"20261203T03120{n}Z-batt-3f-{n}" for n in range(5)]
    for n, incident_id in enumerate(ids):  # first chunks only: 5 × 256 KiB never complete
        first = chunks_of(record_file(incident_id, noise=600_000 + n),
                          incident_id=incident_id)[0]
        assert full.add(first, n) == "stored"
    waiting = [w["id"] for w in full.waiting()]  # the idlest went (gateway.ingest.incident_room)
    assert waiting == ids[-len(waiting):] and len(waiting) == 4


def test_an_id_two_gateways_sent_needs_the_gateway(store: CentralIncidents) -> None:
    for gw in ("gw-1", "gw-2"):
        [chunk] = chunks_of(record_file(gateway=gw), gateway=gw)
        store.add(chunk, 1)
    with pytest.raises(IncidentChunkError, match="say which with --gateway"):
        store.read(INCIDENT)
    assert store.read(INCIDENT, "gw-2")[1] == "gw-2"


def test_the_cli_store_reads_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "incidents.sqlite"
    with pytest.raises(IncidentChunkError, match="no central incident store"):
        CentralIncidents(path, readonly=True)
    writer = CentralIncidents(path)
    [chunk] = chunks_of(record_file())
    writer.add(chunk, 1)
    reader = CentralIncidents(path, readonly=True)
    assert reader.load(INCIDENT)["id"] == INCIDENT
    with pytest.raises(Exception, match="readonly"):
        reader.add(chunk.model_copy(update={"id": "20261203T031200Z-batt-3f-1"}), 2)
