"""The order of each alarm's events in the database: the journal's, whatever the gateway's clock.

*Active alarms* shows, per alarm, its event latest by time; the gateway's journal orders an
alarm's events by `seq`. When the two disagree the dashboards show a wrong state for as long
as nothing newer comes — an alarm active that was cleared, or one cleared that is active:

* a higher `seq` stamped no later than the newest event written (the gateway's clock stepped
  back between the two: NTP, a Pi's RTC-less boot) would sort before it: it is placed 1 ms
  after it (the central audit: a clear sorted before its raise, and the alarm showed active
  until its next event);
* a lower `seq` re-stamped at its receive time (gateway.ingest.timecheck: a backlog older
  than `max_event_age`, arriving after the live events a gateway sends first) would sort
  after it: it is placed 1 ms before it (VictoriaMetrics keeps milliseconds), less a
  nanosecond for each `seq` it is below it, so a backlog keeps its own order where
  nanoseconds are kept (InfluxDB). One at its own time is left there: a gateway restored
  from a backup or a cloned image numbers its journal again from where the copy left it, so
  its new alarms have lower `seq`s than those written before — moved before them they would
  never show active. The watermark store tells when a gateway reuses a delivery number with
  another message (gateway.ingest.watermark, `resent`): its journal went back too, and the
  ingest `forget`s that gateway's alarms here.

A moved event is marked like a re-stamped one (`clock_suspect`, its own time in `gateway_ts`)
and logged (`event=alarm_event_reordered`, at most a line a minute per gateway). No event is
placed more than `timecheck.AHEAD_NS` (5 minutes) ahead of the ingest's clock: the central
audit's clear after a raise stamped 8 h ahead went to +8 h too, invisible until then (such a
raise is now written at its receive time anyway).

What the ordering needs — each alarm's newest event written, (seq, time) — is kept in SQLite
(`order_store`, default `alarm-order.sqlite` beside `catalog_store`; WAL, synchronous NORMAL:
a crash of the process loses nothing, a power cut at most the last moments' entries, whose
alarms are then ordered from their next event on), so a restart of the ingest keeps it: kept
in memory only, a clear arriving after a restart landed before a raise still in the future.
Bounded: at most `PER_GATEWAY` alarms per gateway (its least recently written go first: one
gateway's flood never takes another's), at most `TOTAL` in all (the gateway holding the most
gives up its least recently written). Before, past 100,000 alarms the whole memory was
cleared, every gateway's at once. Workers of one shared subscription group on one host should
share the file (a gateway's events reach either; docs/scaling.md): the bounds are then counted
per worker.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from gateway.contract.wire import AlarmEventMessage, Message
from gateway.ingest.timecheck import AHEAD_NS
from gateway.storage import open_sqlite, private_dir

log = logging.getLogger("roomwarden.ingest")

AFTER_NS = 1_000_000
"""An event out of its alarm's order is placed this long (1 ms: VictoriaMetrics keeps
milliseconds) after the newest (or before it)."""
PER_GATEWAY = 20_000
"""Alarms (rule, subject) remembered per gateway."""
TOTAL = 400_000
"""Alarms remembered in all (about 180 bytes each on disk with the index: some 70 MB)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS newest (site TEXT NOT NULL, gateway TEXT NOT NULL,
    rule TEXT NOT NULL, subject TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL,
    touched INTEGER NOT NULL, PRIMARY KEY (site, gateway, rule, subject)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS newest_touched ON newest (site, gateway, touched);
"""


class AlarmOrder:
    """`place()` an alarm event where its `seq` says among its alarm's events written."""

    def __init__(self, path: Path, *, per_gateway: int | None = None,
                 total: int | None = None) -> None:
        self.per_gateway = PER_GATEWAY if per_gateway is None else per_gateway
        self.total = TOTAL if total is None else total
        private_dir(path.parent)
        self._lock = threading.Lock()
        self._db = open_sqlite(path, synchronous="NORMAL")
        self._db.executescript(_SCHEMA)
        self._held: dict[tuple[str, str], int] = {
            (str(s), str(g)): int(n) for s, g, n in self._db.execute(
                "SELECT site, gateway, COUNT(*) FROM newest GROUP BY site, gateway")}
        """(site, gateway) → alarms remembered."""
        self._count = sum(self._held.values())
        row = self._db.execute("SELECT MAX(touched) FROM newest").fetchone()
        self._tick = int(row[0] or 0)
        self.evicted = 0
        """Alarms forgotten to stay within the bounds (since start)."""

    def __len__(self) -> int:
        with self._lock:
            return self._count

    def place(self, message: Message, gateway_ts: int | None, now_ns: int
              ) -> tuple[Message, int | None]:
        """`message` and its `gateway_ts` (the gateway's own time if the message is moved:
        kept if it was re-stamped already), an alarm event moved where its `seq` puts it."""
        if not isinstance(message, AlarmEventMessage):
            return message, gateway_ts
        key = (message.site, message.gateway, message.rule, message.subject)
        with self._lock:
            row = self._db.execute(
                "SELECT seq, ts FROM newest WHERE site = ? AND gateway = ? AND rule = ? AND "
                "subject = ?", key).fetchone()
            placed = None
            if row is not None:
                seq, ts = int(row[0]), int(row[1])
                if message.seq > seq and message.ts <= ts:  # after the newest
                    placed = min(ts + AFTER_NS, now_ns + AHEAD_NS)
                elif message.seq < seq and message.ts >= ts and gateway_ts is not None:
                    placed = ts - AFTER_NS - (seq - message.seq)
            if placed is not None:
                log.warning("event=alarm_event_reordered site=%s gateway=%s rule=%s "
                            "subject=%s seq=%d gateway_ts=%d placed=%d newest_seq=%d "
                            "newest_ts=%d (its time disagrees with the journal's order of its "
                            "alarm's events: the gateway's clock stepped, or it was re-stamped "
                            "at its arrival)", message.site, message.gateway, message.rule,
                            message.subject, message.seq, message.ts, placed, row[0], row[1])
                gateway_ts = message.ts if gateway_ts is None else gateway_ts
                message = message.model_copy(update={"ts": placed})
            if row is None or message.seq > int(row[0]):
                self._remember(key, message.seq, message.ts, new=row is None)
        return message, gateway_ts

    def forget(self, site: str, gateway: str) -> None:
        """Forget every alarm of (site, gateway): its journal went back (a copy of its state
        directory), so its `seq`s no longer compare with those written before."""
        with self._lock:
            gone = self._db.execute("DELETE FROM newest WHERE site = ? AND gateway = ?",
                                    (site, gateway)).rowcount
            self._count -= self._held.pop((site, gateway), 0)
        log.warning("event=alarm_order_forgotten site=%s gateway=%s alarms=%d (the gateway "
                    "reused a delivery number: its state directory is a copy, its journal "
                    "numbers again from where the copy left it)", site, gateway, gone)

    def _remember(self, key: tuple[str, str, str, str], seq: int, ts: int, *,
                  new: bool) -> None:
        gateway = (key[0], key[1])
        db = self._db
        db.execute("BEGIN")
        try:
            if new:
                if self._held.get(gateway, 0) >= self.per_gateway:
                    self._forget_oldest(gateway)  # its own: a flood costs only itself
                elif self._count >= self.total:
                    fullest = max(self._held.items(), key=lambda kv: kv[1])[0]
                    self._forget_oldest(fullest)
                self._held[gateway] = self._held.get(gateway, 0) + 1
                self._count += 1
            self._tick += 1
            db.execute("INSERT INTO newest VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (site, "
                       "gateway, rule, subject) DO UPDATE SET seq = excluded.seq, "
                       "ts = excluded.ts, touched = excluded.touched", (*key, seq, ts,
                                                                        self._tick))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _forget_oldest(self, gateway: tuple[str, str]) -> None:
        """Forget `gateway`'s least recently written alarm."""
        row = self._db.execute(
            "SELECT rule, subject FROM newest WHERE site = ? AND gateway = ? ORDER BY touched "
            "LIMIT 1", gateway).fetchone()
        if row is None:  # (none left: the count was off)
            self._count -= self._held.pop(gateway, 0)
            return
        self._db.execute("DELETE FROM newest WHERE site = ? AND gateway = ? AND rule = ? AND "
                         "subject = ?", (*gateway, row[0], row[1]))
        self.evicted += 1
        self._count -= 1
        left = self._held.get(gateway, 1) - 1
        if left > 0:
            self._held[gateway] = left
        else:
            self._held.pop(gateway, None)

    def close(self) -> None:
        with self._lock:
            self._db.close()
