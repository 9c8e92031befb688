"""The park limit and how it is shared among gateways (gateway.ingest.writer `park_limit`,
`shed`); end to end through a real broker and database: test_parking_share.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.ingest.items import Item
from gateway.ingest.parking import park_limit, shed
from gateway.ingest.settings import IngestSettings

SITE, NEVER = "bj-idc", "0123456789abcdef"


def _parked(gw: str, received: float) -> Item:
    return Item(mid=0, qos=1, generation=1, topic=f"roomwarden/{SITE}/{gw}/telemetry",
                payload=b"", received=received, waiting=(SITE, gw, NEVER))


def test_shed_takes_from_the_gateway_holding_most() -> None:
    a = [_parked("a", t) for t in (1.0, 2.0, 3.0, 4.0)]
    b = [_parked("b", 0.5)]
    cc = [_parked("c", t) for t in (1.5, 2.5)]
    parked = sorted(a + b + cc, key=lambda i: i.received)
    kept, gone = shed(parked, 7)
    assert kept == parked and gone == []
    kept, gone = shed(parked, 4)  # share 1: a sheds to 2, then a and c tie: c's is older
    assert gone == [a[0], a[1], cc[0]]
    assert kept == [b[0], cc[1], a[2], a[3]]
    assert all(i.dead_kind == "unknown_catalog" for i in gone)
    assert "of bj-idc/a: the gateway held 4 batches" in str(gone[0].dead_reason)
    assert "more than its share of 1 (at most 4 wait, shared by the 3 gateways" in str(
        gone[0].dead_reason)


@pytest.mark.parametrize(("protocol", "extra", "limit"), [
    ("5", {}, 200), ("5", {"receive_maximum": 100}, 50), ("3.1.1", {}, 10),
    ("3.1.1", {"broker_max_inflight": 1000}, 200),
    ("3.1.1", {"broker_max_inflight": 1000, "max_parked": 300}, 300)])
def test_park_limit_is_half_the_inflight_window(
        tmp_path: Path, protocol: str, extra: dict[str, object], limit: int) -> None:
    mqtt = {"host": "h", "protocol": protocol, "client_id": "i",
            **{k: v for k, v in extra.items() if k != "max_parked"}}
    settings = IngestSettings.model_validate({
        "mqtt": mqtt, "influx": {"url": "http://x", "org": "o", "bucket": "b"},
        **{k: v for k, v in extra.items() if k == "max_parked"}})
    assert park_limit(settings) == limit
