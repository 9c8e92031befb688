"""A message with a delivery number (stream, dseq — every message of a gateway in the default
`delivery: ingest`) is recognised as a duplicate by the acknowledgement watermark, so the
duplicate-key store holds nothing for it: what the ingest keeps to recognise duplicates is
bounded by what gateways hold unacknowledged, not by eight days of a fleet's batches (one key
a batch, ~114 bytes: 80 MB a gateway at a batch a second). Real broker, real VictoriaMetrics
without deduplication (a message written twice would show as two samples at one time)."""

from __future__ import annotations

from pathlib import Path

from gateway.contract import wire as c
from tests.fixtures.services import Broker, Victoria, wait_for
from tests.ingest.test_service import (
    CATALOG,
    Gateway,
    batch,
    make_settings,
    ms,
    subscribed,
    values,
)

STREAM = 77


def numbered(seq: int, second: int, temp: float) -> c.TelemetryBatch:
    return batch(seq, second, temp).model_copy(update={"stream": STREAM, "dseq": seq})


def test_numbered_messages_are_deduplicated_by_the_watermark_and_keep_no_keys(
        tmp_path: Path, broker: Broker, victoria: Victoria) -> None:
    gateway = Gateway(broker)
    try:
        with subscribed(make_settings(tmp_path, broker, victoria)) as first:
            gateway.send(CATALOG)
            for seq, temp in ((1, 21.0), (2, 22.0), (2, 22.0), (4, 24.0)):  # 2 again; 3 a hole
                gateway.send(numbered(seq, seq, temp))
            gateway.send(numbered(4, 4, 24.0))  # done above the hole: still a duplicate
            wait_for(lambda: first.status()["acked"] == 6, what="6 acknowledged")
            assert first.status()["duplicates"] == 2
            assert len(first._writer.seen) == 0  # numbered: nothing kept beside the watermark
        with subscribed(make_settings(tmp_path, broker, victoria)) as second:  # durable
            gateway.send(numbered(1, 1, 21.0))  # replayed after a gateway crash
            gateway.send(numbered(3, 3, 23.0))  # the hole fills
            gateway.send(numbered(4, 4, 24.0))
            gateway.send(batch(9, 9, 29.0))  # no delivery number (`delivery: puback`): a key
            gateway.send(batch(9, 9, 29.0))
            wait_for(lambda: second.status()["acked"] == 5, what="5 acknowledged")
            assert second.status()["duplicates"] == 3
            assert len(second._writer.seen) == 1
            assert values(victoria, "temperature_value") == {
                ms(1): 21.0, ms(2): 22.0, ms(3): 23.0, ms(4): 24.0, ms(9): 29.0}
    finally:
        gateway.close()
