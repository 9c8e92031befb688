"""The ingest's dead-letter log is bounded: 100 MB of junk through a real Mosquitto into a real
ingest leaves the log under its cap (it used to grow by the junk's full size), with each junk
message recognisable by its length and SHA-256. A contract message it refuses for what it says
(a catalog that never came, a gateway clock out of bounds) is acknowledged to its gateway and
kept whole, however large, for a replay."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import time
from pathlib import Path

from gateway.contract import wire as c
from gateway.field.sample import Quality, Sample
from gateway.ingest.deadletter import MAX_PAYLOAD, MAX_WHOLE, PREFIX, DeadLetterLog
from gateway.ingest.service import IngestService
from tests.fixtures.services import Broker, Victoria, wait_for
from tests.ingest.test_service import GW, NOW, SITE, Gateway, make_settings, ms, values


def records(path: Path) -> list[dict[str, object]]:
    files = sorted(path.parent.glob(path.name + "*"), key=lambda p: p.name, reverse=True)
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def on_disk(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def test_junk_through_the_broker_leaves_the_log_under_its_cap(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway) -> None:
    settings = make_settings(tmp_path, broker, victoria)
    service = IngestService(settings)
    service.start()
    topic = f"roomwarden/{SITE}/{GW}/telemetry"
    big = [os.urandom(10 * 2**20) for _ in range(5)]  # refused for their size
    small = os.urandom(MAX_PAYLOAD)  # kept whole: 3,200 of them
    try:
        wait_for(lambda: bool(service.status()["connected"]), what="ingest connected")
        for payload in big:
            gateway.raw(topic, payload)
        for i in range(3200):
            gateway.raw(topic, i.to_bytes(4, "big") + small[4:])
        sent = len(big) * 10 * 2**20 + 3200 * MAX_PAYLOAD
        assert sent >= 100 * 10**6
        wait_for(lambda: service.status()["acked"] == 3205, timeout=180,
                 what="every junk message acknowledged")
        assert service.status()["dead_lettered"] == 3205
    finally:
        service.stop()
    dead = settings.dead_letter
    log = DeadLetterLog(dead)  # the defaults the service used
    assert on_disk(dead) <= log.cap_bytes < sent
    kept = records(dead)
    assert 0 < len(kept) < 3205  # the oldest rotated away …
    newest = kept[-1]  # … the newest kept, whole
    assert base64.b64decode(str(newest["payload"]))[:4] == (3199).to_bytes(4, "big")
    assert newest["length"] == MAX_PAYLOAD and newest["truncated"] is False
    for f in dead.parent.glob(dead.name + "*"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_an_oversized_payload_keeps_prefix_length_and_hash(tmp_path: Path) -> None:
    log = DeadLetterLog(tmp_path / "dead.jsonl")
    payload = os.urandom(10 * 2**20)
    log.add("t" * 5000, payload, "x" * 5000, 1)
    [record] = records(tmp_path / "dead.jsonl")
    assert record["length"] == len(payload) and record["truncated"] is True
    assert record["sha256"] == hashlib.sha256(payload).hexdigest()
    assert base64.b64decode(str(record["payload"])) == payload[:PREFIX]
    assert len(str(record["topic"])) == 1024 and len(str(record["reason"])) == 2000
    assert (tmp_path / "dead.jsonl").stat().st_size < 8192  # not 10 MB


def test_rotation_keeps_the_newest_files_within_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    log = DeadLetterLog(path, max_file_bytes=200_000, keep=2, max_payload=10_000, prefix=100)
    for i in range(200):
        log.add("t", i.to_bytes(2, "big") * 5000, "bad", i)
        assert on_disk(path) <= log.cap_bytes
    assert log.count == 200 and log.rotations > 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dead.jsonl", "dead.jsonl.1",
                                                          "dead.jsonl.2"]
    times = [int(str(r["time"])) for r in records(path)]
    assert times == sorted(times) and times[-1] == 199  # oldest first, none out of order
    log.close()
    again = DeadLetterLog(path, max_file_bytes=200_000, keep=2, max_payload=10_000, prefix=100)
    again.add("t", b"after a restart", "bad", 200)  # appends, rotating by the file's real size
    assert on_disk(path) <= again.cap_bytes
    assert records(path)[-1]["time"] == 200


def _large_batch(seq: int, t0: int, catalog: str | None) -> c.TelemetryBatch:
    """800 readings of 80 points: a valid batch of ~40 KB, past the junk limit (16 KiB)."""
    return c.TelemetryBatch.from_samples(
        site=SITE, gateway=GW, seq=seq, produced=t0, catalog=catalog, samples=[
            Sample(f"th-{i % 80}.temperature_{i // 80}", 20.0 + i / 7, t0 + i * 1000,
                   Quality.GOOD) for i in range(800)]).model_copy(
        update={"stream": 42, "dseq": seq})


def test_a_refused_contract_message_is_kept_whole_for_a_replay(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway) -> None:
    """Two valid batches larger than the junk limit, both refused for what they say — one
    names a catalog that never comes, one comes from a clock ten minutes ahead — are
    acknowledged to the gateway (which then lets go of them) and dead-lettered whole: each
    record's payload is the message's bytes, which decode to its 800 readings. (They kept 1 KiB
    of it: 779 readings gone for good.)"""
    settings = make_settings(tmp_path, broker, victoria, catalog_wait="1500ms")
    unknown = c.encode(_large_batch(1, NOW, "0123456789abcdef"))
    ahead = c.encode(_large_batch(2, time.time_ns() + 600 * 10**9, None))
    assert len(unknown) > MAX_PAYLOAD and len(ahead) > MAX_PAYLOAD
    service = IngestService(settings)
    service.start()
    topic = f"roomwarden/{SITE}/{GW}/telemetry"
    try:
        wait_for(lambda: bool(service.status()["subscribed"]), what="ingest subscribed")
        gateway.raw(topic, unknown)
        gateway.raw(topic, ahead)
        wait_for(lambda: service.status()["dead_lettered"] == 2, timeout=30,
                 what="both batches dead-lettered")
        wait_for(lambda: service.status()["acked"] == 2, what="both acknowledged")
    finally:
        service.stop()
    kept = records(settings.dead_letter)
    assert sorted(int(str(r["length"])) for r in kept) == sorted([len(unknown), len(ahead)])
    for record in kept:
        payload = base64.b64decode(str(record["payload"]))
        assert record["truncated"] is False
        assert payload in (unknown, ahead)
        assert record["sha256"] == hashlib.sha256(payload).hexdigest()
        message = c.decode(topic, payload)
        assert isinstance(message, c.TelemetryBatch) and len(message.samples) == 800
    reasons = " | ".join(str(r["reason"]) for r in kept)
    assert "unknown catalog" in reasons and "clock" in reasons.lower(), reasons


def test_whole_messages_are_bounded_by_the_contract_and_by_the_file(tmp_path: Path) -> None:
    """A decoded message is whole up to the contract's payload limit (2 MiB), junk up to 16 KiB;
    a log made with small files keeps a whole record within half a file."""
    log = DeadLetterLog(tmp_path / "dead.jsonl")
    assert log.max_whole == MAX_WHOLE == 2 * 2**20
    message = os.urandom(MAX_WHOLE)
    assert log.cut(message, decoded=True) == (message, None)
    kept, cut = log.cut(message)
    assert kept == message[:PREFIX] and cut == (MAX_WHOLE, hashlib.sha256(message).hexdigest())
    kept, cut = log.cut(message + b"x", decoded=True)
    assert kept == message[:PREFIX] and cut is not None and cut[0] == MAX_WHOLE + 1
    small = DeadLetterLog(tmp_path / "small.jsonl", max_file_bytes=200_000, max_payload=10_000,
                          prefix=100)
    assert 10_000 <= small.max_whole <= 75_000
    for i in range(12):
        small.add("t", bytes([i]) * small.max_whole, "refused", i, decoded=True)
        assert on_disk(tmp_path / "small.jsonl") <= small.cap_bytes
    assert all(r["truncated"] is False for r in records(tmp_path / "small.jsonl"))


def test_a_batch_holding_a_point_twice_at_one_time_is_dead_lettered_whole(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway) -> None:
    """Two values of one series at one instant: VictoriaMetrics stored both, InfluxDB keeps the
    last (the central audit). The batch breaks the contract's "each point at most once": it is
    dead-lettered whole and acknowledged, nothing of it written; the next batch is."""
    settings = make_settings(tmp_path, broker, victoria)
    twice = c.TelemetryBatch.from_samples(
        site=SITE, gateway=GW, seq=1, produced=NOW, samples=[
            Sample("th-9.temperature", 1.0, NOW, Quality.GOOD),
            Sample("th-9.temperature", 99.0, NOW, Quality.GOOD)])
    fine = c.TelemetryBatch.from_samples(
        site=SITE, gateway=GW, seq=2, produced=NOW + 10**9, samples=[
            Sample("th-9.temperature", 2.0, NOW + 10**9, Quality.GOOD)])
    service = IngestService(settings)
    service.start()
    try:
        wait_for(lambda: bool(service.status()["subscribed"]), what="ingest subscribed")
        gateway.send(twice)
        gateway.send(fine)
        wait_for(lambda: service.status()["acked"] == 2, what="both acknowledged")
        assert service.status()["dead_lettered"] == 1
    finally:
        service.stop()
    [record] = records(settings.dead_letter)
    assert "appears twice" in str(record["reason"]) and record["truncated"] is False
    assert base64.b64decode(str(record["payload"])) == c.encode(twice)
    # (no catalog: the measurement is `unclassified`); the repeated rows left nothing
    assert values(victoria, "unclassified_value") == {ms(1): 2.0}
