"""What the ingest has already written, so a redelivered message is acknowledged, not rewritten.

MQTT QoS 1 is at-least-once: a gateway re-sends what it published but had not seen
acknowledged when it lost its connection or was killed, and the broker re-sends to the ingest
what the ingest had not acknowledged. InfluxDB collapses a re-written point onto the stored one;
other v2-write-API databases (VictoriaMetrics without deduplication) store it twice, and even
InfluxDB pays for the write. So the ingest keeps the duplicate keys of the contract — per
gateway the telemetry `seq`, the alarm journal `seq`, the state's `ts` — together with the
message's own time (a batch's `t0`, an event's `ts`), so that a gateway whose outbox was wiped
and whose numbers start again at 1 is not mistaken for a replay.

A message carrying a delivery number (stream, `dseq` — every message of a gateway in the default
`delivery: ingest`) is recognised by the acknowledgement watermark instead
(`gateway.ingest.watermark.AckStore.covers`: at or below its stream's watermark, or done above
it), and no key is kept for it: the gateway deletes what a watermark covers by the same
numbers, so both sides trust one identity, and what the ingest holds to recognise duplicates is
bounded by what gateways hold unacknowledged. Keys are kept for the rest: gateway states and
the messages of a gateway in `delivery: puback` (one a batch: ~114 bytes, so about 80 MB a
gateway over the 8 days at a batch a second).

Keys are committed (SQLite, WAL, synchronous FULL) after the database accepted the message's
points and before the message is acknowledged: a crash in between at worst writes a message
twice (which InfluxDB collapses), never loses one. Keys older than `retention` (default 8 days,
longer than the broker keeps a session) are pruned. One store per ingest instance: with several
instances on a shared subscription, a duplicate that reaches another instance is written
again (and collapses in InfluxDB).

The same store remembers when each message it re-stamped was first received
(`received_at`: an alarm event or live state stamped by a gateway clock unset or wrong is
written at the ingest's receive time, gateway.ingest.timecheck), committed before the message
is written: a redelivery is written — if at all — at that same time, never as a second row at
another.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from gateway.contract.wire import AlarmEventMessage, GatewayState, Message, TelemetryBatch
from gateway.storage import open_sqlite, private_dir


class SeenKey(NamedTuple):
    kind: str
    site: str
    gateway: str
    seq: int
    time: int


def seen_key(message: Message) -> SeenKey | None:
    """The duplicate key of a message the ingest writes (None for messages it does not)."""
    if isinstance(message, TelemetryBatch):
        return SeenKey("telemetry", message.site, message.gateway, message.seq, message.t0)
    if isinstance(message, AlarmEventMessage):
        return SeenKey("alarm", message.site, message.gateway, message.seq, message.ts)
    if isinstance(message, GatewayState):
        return SeenKey("state", message.site, message.gateway, message.ts,
                       int(message.status == "online"))
    return None


class SeenStore:
    PRUNE_EVERY = 10_000
    """Keys added between two prunes."""

    def __init__(self, path: Path, *, retention_ns: int = 8 * 24 * 3600 * 10**9) -> None:
        self.retention_ns = retention_ns
        self._lock = threading.Lock()
        private_dir(path.parent)
        self._db = open_sqlite(path, synchronous="FULL")  # why FULL: gateway.storage
        self._db.execute("CREATE TABLE IF NOT EXISTS seen (kind TEXT NOT NULL, "
                         "site TEXT NOT NULL, gateway TEXT NOT NULL, seq INTEGER NOT NULL, "
                         "time INTEGER NOT NULL, added INTEGER NOT NULL, "
                         "PRIMARY KEY (kind, site, gateway, seq, time)) WITHOUT ROWID")
        self._db.execute("CREATE INDEX IF NOT EXISTS seen_added ON seen (added)")
        self._db.execute("CREATE TABLE IF NOT EXISTS restamped (kind TEXT NOT NULL, "
                         "site TEXT NOT NULL, gateway TEXT NOT NULL, seq INTEGER NOT NULL, "
                         "time INTEGER NOT NULL, received INTEGER NOT NULL, "
                         "PRIMARY KEY (kind, site, gateway, seq, time)) WITHOUT ROWID")
        self._since_prune = 0

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, SeenKey):
            return False
        with self._lock:
            return self._db.execute(
                "SELECT 1 FROM seen WHERE kind = ? AND site = ? AND gateway = ? AND seq = ? "
                "AND time = ?", tuple(key)).fetchone() is not None

    def add(self, keys: Iterable[SeenKey], now_ns: int) -> None:
        """Remember `keys` durably (one transaction); prunes old keys now and then."""
        rows = [(*k, now_ns) for k in keys]
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR IGNORE INTO seen VALUES (?, ?, ?, ?, ?, ?)",
                                     rows)
                self._since_prune += len(rows)
                if self._since_prune >= self.PRUNE_EVERY:
                    self._db.execute("DELETE FROM seen WHERE added < ?",
                                     (now_ns - self.retention_ns,))
                    self._db.execute("DELETE FROM restamped WHERE received < ?",
                                     (now_ns - self.retention_ns,))
                    self._since_prune = 0
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def received_at(self, key: SeenKey, now_ns: int, remember: bool = True) -> int | None:
        """When the message of `key` was first received: `now_ns` the first time (committed
        durably, unless `remember` is false: then None), the remembered time after that."""
        with self._lock:
            row = self._db.execute(
                "SELECT received FROM restamped WHERE kind = ? AND site = ? AND gateway = ? "
                "AND seq = ? AND time = ?", tuple(key)).fetchone()
            if row is not None:
                return int(row[0])
            if not remember:
                return None
            self._db.execute("INSERT INTO restamped VALUES (?, ?, ?, ?, ?, ?)", (*key, now_ns))
            return now_ns

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM seen").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
