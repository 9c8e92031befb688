"""The ingest's acknowledgement watermarks: per gateway and outbox stream, the highest delivery
sequence (`dseq`) up to which everything is stored — what the ingest publishes, retained, on
`<root>/<site>/<gateway>/ack` (a `DeliveryAck`) so the gateway may let go of its outbox entries.

A number counts as done when the database accepted its message, when it was a duplicate of a
stored one, or when it went to the dead-letter log (the ingest will do nothing more with it;
the log keeps it for a replay by hand). The numbers above the watermark that are done wait in
`above` until the hole below them fills: the gateway re-sends what a hole lacks. A gateway
tells its `floor` in its state (the lowest number it still holds): numbers below it were
dropped by its outbox to stay within its disk budget and will never come, so the watermark
moves up to the floor − 1.

Bounds (the central audit: one gateway's messages stopped the ingest for the whole fleet, and a
forged state pinned another's watermark for good):

- at most `MAX_STREAMS` streams per gateway are kept, the least recently updated going first
  with their waiting numbers (a gateway has one live stream; a new one comes with a wiped
  outbox): 40,000 streams made `latest()` take minutes on the MQTT network thread, every
  reconnect timing out, and the file kept them across restarts;
- on a stream the store knows, a `dseq` or floor more than `MAX_JUMP` above what it has seen
  is ignored and logged (`event=ack_number_implausible`): a forged floor of 10¹² would have
  acknowledged every number the gateway will ever send, so the gateway (which refuses an
  acknowledgement of numbers it never gave) would never be acknowledged again;
- a state whose floor is more than `RESET_GAP` below the watermark resets the watermark
  to the floor − 1 (`event=ack_watermark_reset`): the gateway still holds those numbers, so
  the watermark is wrong (set by a forged floor within `MAX_JUMP`); the gateway sends them
  again and duplicates are recognised. A floor a little below the watermark is normal — an
  acknowledgement on its way when the state was made — and changes nothing, unless:
- a state with a new `boot` (the gateway process started again, `booted`) whose floor is at or
  below the watermark resets the watermark to the floor − 1 whatever the gap, logged once with
  both numbers (`event=ack_watermark_reset … upto=… floor=…`; at most a line a minute per
  gateway: two clones alternating boots would reset it at each state). A gateway restored from a
  backup or a cloned SD image numbers on from where the copy left its outbox: its new
  messages carry numbers the watermark covered, and were discarded as duplicates, every
  re-send again (the central audit: a new smoke alarm never stored, nothing said). The
  gateway still holds every number from its floor on, so nothing it holds is acknowledged
  unstored. The messages it sends again that were stored before are recognised by their
  identity — each done number's duplicate key (kind, `seq`, time: gateway.ingest.dedup) is
  kept in `sent` — while numbers up to the old highest may come again (`_windows`); a number
  sent with another identity is a new message and written, and `resent` says so once (the
  gateway's state directory is a copy: gateway.ingest.alarmorder forgets the order of its
  alarms, whose journal numbers again too). A plain restart whose state still
  names acknowledged numbers (the ack was on its way) costs re-sends recognised so, or one
  state more from the gateway (it tells its floor when an ack is below it). The same boot
  again (a refresh, a reconnect, the retained state at the ingest's subscribe) changes
  nothing, nor does a state of a stream the store does not know yet;
- identities are kept from the gateway's floor on (it holds nothing below), at most
  `MAX_SENT` numbers per stream: a re-send of a number older than that after a reset (a
  backup's outbox much older than its stream's newest numbers) is written again, at the same
  series and time (InfluxDB keeps one; VictoriaMetrics without deduplication two). A window is
  known to the instance that received the state (instances sharing the file: a re-send
  reaching another one may be written again).

SQLite (WAL, synchronous FULL: a watermark that went back after a power cut would only make
gateways send again, but one that went forward would lose data, and the write order — database,
then keys, then the watermark — keeps it behind). Several ingest instances on one host may share
the file (one per shared subscription group): each update is one IMMEDIATE transaction.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

from gateway.ingest.dedup import SeenKey
from gateway.ingest.timecheck import per_gateway
from gateway.ops.connections import RateLimitFilter
from gateway.storage import open_sqlite, private_dir

log = logging.getLogger("roomwarden.ingest")
log.addFilter(RateLimitFilter(prefix="event=ack_watermark_reset", kind=per_gateway))

StreamKey = tuple[str, str, int]
"""(site, gateway, stream)."""
MAX_STREAMS = 16
"""Streams kept per gateway (the least recently updated go first)."""
MAX_JUMP = 10_000_000
"""How far above what a known stream has shown a number may be (a gateway's outbox holds far
fewer: numbers beyond it were never given)."""
RESET_GAP = 1_000_000
"""How far below the watermark a floor resets it without a new boot (module docstring)."""
MAX_SENT = 100_000
"""Identities of done numbers kept per stream (the newest; see the module docstring)."""
Delivery = tuple[str, str, int, int]
"""(site, gateway, stream, dseq), or (site, gateway, stream, floor)."""


class Watermark(NamedTuple):
    site: str
    gateway: str
    stream: int
    upto: int
    highest: int


_SCHEMA = """
CREATE TABLE IF NOT EXISTS acks (site TEXT NOT NULL, gateway TEXT NOT NULL,
    stream INTEGER NOT NULL, upto INTEGER NOT NULL, highest INTEGER NOT NULL,
    updated INTEGER NOT NULL, PRIMARY KEY (site, gateway, stream)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS above (site TEXT NOT NULL, gateway TEXT NOT NULL,
    stream INTEGER NOT NULL, dseq INTEGER NOT NULL,
    PRIMARY KEY (site, gateway, stream, dseq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS boots (site TEXT NOT NULL, gateway TEXT NOT NULL,
    stream INTEGER NOT NULL, boot INTEGER NOT NULL, resent_upto INTEGER NOT NULL,
    PRIMARY KEY (site, gateway, stream)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sent (site TEXT NOT NULL, gateway TEXT NOT NULL,
    stream INTEGER NOT NULL, dseq INTEGER NOT NULL, kind TEXT NOT NULL, seq INTEGER NOT NULL,
    time INTEGER NOT NULL, PRIMARY KEY (site, gateway, stream, dseq)) WITHOUT ROWID;
"""


class AckStore:
    def __init__(self, path: Path) -> None:
        private_dir(path.parent)
        self._lock = threading.Lock()
        self._db = open_sqlite(path, synchronous="FULL")
        self._db.executescript(_SCHEMA)
        self._windows: dict[StreamKey, int] = {
            (str(s), str(g), int(st)): int(u) for s, g, st, u in self._db.execute(
                "SELECT site, gateway, stream, resent_upto FROM boots WHERE resent_upto > 0")}
        """Streams reset while numbers up to this may come again (module docstring)."""
        self._reused: set[StreamKey] = set()
        """Reset streams whose reuse of a number `resent` reported (once a window)."""

    def record(self, done: Iterable[Delivery], floors: Iterable[Delivery], now_ns: int,
               identities: Mapping[Delivery, SeenKey] | None = None) -> list[Watermark]:
        """`done`: (site, gateway, stream, dseq) handled for good; `floors`: (site, gateway,
        stream, floor) from gateway states; `identities`: the duplicate key of each number
        written or dead-lettered (not of a duplicate). Returns the watermarks that moved."""
        numbers: dict[StreamKey, set[int]] = defaultdict(set)
        named: dict[StreamKey, list[tuple[int, str, int, int]]] = defaultdict(list)
        for site, gateway, stream, dseq in done:
            numbers[(site, gateway, stream)].add(dseq)
        for (site, gateway, stream, dseq), ident in (identities or {}).items():
            named[(site, gateway, stream)].append((dseq, ident.kind, ident.seq, ident.time))
        lowest: dict[StreamKey, int] = {}
        for site, gateway, stream, floor in floors:
            key = (site, gateway, stream)
            lowest[key] = max(lowest.get(key, 0), floor)
            numbers.setdefault(key, set())
        if not numbers:
            return []
        moved: list[Watermark] = []
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for key, seqs in numbers.items():
                    mark = self._update(key, seqs, lowest.get(key, 0), now_ns,
                                        named.get(key, []))
                    if mark is not None:
                        moved.append(mark)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return moved

    def _update(self, key: StreamKey, seqs: set[int], floor: int, now_ns: int,
                named: list[tuple[int, str, int, int]]) -> Watermark | None:
        db = self._db
        row = db.execute("SELECT upto, highest FROM acks WHERE site = ? AND gateway = ? AND "
                         "stream = ?", key).fetchone()
        upto, highest = (int(row[0]), int(row[1])) if row else (0, 0)
        start, top, reset = upto, highest, False
        if row is not None:
            limit = max(upto, highest) + MAX_JUMP
            wild = [s for s in seqs if s > limit] + ([floor] if floor > limit + 1 else [])
            if wild:
                log.warning("event=ack_number_implausible site=%s gateway=%s stream=%d "
                            "numbers=%s highest=%d (more than %d above what this stream has "
                            "shown: ignored)", *key, sorted(wild)[:5], highest, MAX_JUMP)
                seqs = {s for s in seqs if s <= limit}
                floor = 0 if floor > limit + 1 else floor
            if floor > 0 and floor - 1 + RESET_GAP < upto:
                self._reset(key, upto, highest, floor, "the gateway still holds what the "
                            "watermark covered")
                upto = top = floor - 1
                reset = True
        db.executemany("INSERT OR REPLACE INTO sent VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [(*key, *n) for n in named if n[0] in seqs])
        upto = max(upto, floor - 1)
        fresh = sorted(s for s in seqs if s > upto)
        top = max(top, upto, *fresh) if fresh else max(top, upto)
        db.executemany("INSERT OR IGNORE INTO above VALUES (?, ?, ?, ?)",
                       [(*key, s) for s in fresh])
        while True:  # move up through the numbers that are done, a page at a time
            page = [int(r[0]) for r in db.execute(
                "SELECT dseq FROM above WHERE site = ? AND gateway = ? AND stream = ? AND "
                "dseq > ? ORDER BY dseq LIMIT 1000", (*key, upto))]
            advanced = False
            for s in page:
                if s != upto + 1:
                    break
                upto, advanced = s, True
            if not advanced or len(page) < 1000:
                break
        db.execute("DELETE FROM above WHERE site = ? AND gateway = ? AND stream = ? AND "
                   "dseq <= ?", (*key, upto))
        db.execute("DELETE FROM sent WHERE site = ? AND gateway = ? AND stream = ? AND "
                   "dseq < ?", (*key, max(floor, top + 1 - MAX_SENT)))  # (it holds none)
        window = self._windows.get(key)
        if window is not None and upto >= window:  # nothing it sends again is below it
            del self._windows[key]
            self._reused.discard(key)
            db.execute("UPDATE boots SET resent_upto = 0 WHERE site = ? AND gateway = ? AND "
                       "stream = ?", key)
        if row is not None and upto == start and top == highest and not reset:
            return None
        db.execute("INSERT INTO acks VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (site, gateway, "
                   "stream) DO UPDATE SET upto = excluded.upto, highest = excluded.highest, "
                   "updated = excluded.updated", (*key, upto, top, now_ns))
        if row is None:
            self._forget_old_streams(key[0], key[1])
        return Watermark(*key, upto, top)

    def _forget_old_streams(self, site: str, gateway: str) -> None:
        """Keep the gateway's MAX_STREAMS most recently updated streams."""
        db = self._db
        old = [int(r[0]) for r in db.execute(
            "SELECT stream FROM acks WHERE site = ? AND gateway = ? ORDER BY updated DESC, "
            "stream DESC LIMIT -1 OFFSET ?", (site, gateway, MAX_STREAMS))]
        for stream in old:
            for table in ("acks", "above", "boots", "sent"):
                db.execute(f"DELETE FROM {table} WHERE site = ? AND gateway = ? AND "
                           "stream = ?", (site, gateway, stream))
            self._windows.pop((site, gateway, stream), None)
            self._reused.discard((site, gateway, stream))

    def _reset(self, key: StreamKey, upto: int, highest: int, floor: int, why: str) -> None:
        """The watermark of `key` back to `floor` − 1 (the caller stores it); what was done
        above it forgotten, numbers up to `highest` recognised by identity when sent again."""
        log.warning("event=ack_watermark_reset site=%s gateway=%s stream=%d upto=%d floor=%d "
                    "(%s: the watermark goes back to floor-1; what the gateway sends again is "
                    "recognised by its seq and time)", *key, upto, floor, why)
        db = self._db
        db.execute("DELETE FROM above WHERE site = ? AND gateway = ? AND stream = ?", key)
        window = max(highest, upto, self._windows.get(key, 0))
        self._windows[key] = window
        self._reused.discard(key)
        db.execute("INSERT INTO boots VALUES (?, ?, ?, 0, ?) ON CONFLICT (site, gateway, "
                   "stream) DO UPDATE SET resent_upto = excluded.resent_upto", (*key, window))

    def booted(self, floor: Delivery, boot: int, now_ns: int) -> list[Watermark]:
        """A gateway state with `boot` (its process's start) and `floor` (site, gateway,
        stream, floor): a new boot whose floor is at or below the watermark resets it to the
        floor − 1 (module docstring). Returns the watermark if it moved (to publish)."""
        key: StreamKey = (floor[0], floor[1], floor[2])
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT upto, highest FROM acks WHERE site = ? AND "
                                 "gateway = ? AND stream = ?", key).fetchone()
                known = db.execute("SELECT boot FROM boots WHERE site = ? AND gateway = ? AND "
                                   "stream = ?", key).fetchone()
                if row is None or (known is not None and int(known[0]) == boot):
                    db.execute("COMMIT")
                    return []
                upto, highest = int(row[0]), int(row[1])
                moved = []
                if floor[3] <= upto:
                    self._reset(key, upto, highest, floor[3], f"a new boot {boot} of the "
                                "gateway holds numbers the watermark covered (restored from "
                                "a backup or a cloned image, or an ack it had not seen)")
                    db.execute("UPDATE acks SET upto = ?, highest = ?, updated = ? WHERE "
                               "site = ? AND gateway = ? AND stream = ?",
                               (floor[3] - 1, floor[3] - 1, now_ns, *key))
                    moved = [Watermark(*key, floor[3] - 1, floor[3] - 1)]
                db.execute("INSERT INTO boots VALUES (?, ?, ?, ?, 0) ON CONFLICT (site, "
                           "gateway, stream) DO UPDATE SET boot = excluded.boot", (*key, boot))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return moved

    def resent(self, delivery: Delivery | None, key: SeenKey | None) -> bool | None:
        """For a number of a stream reset while it may come again (`_windows`): True if it was
        done with this identity (sent again: a duplicate the watermark no longer covers),
        False if with another (the number is reused: the gateway's state directory is a copy,
        restored or cloned). None: not such a number, or its identity is not kept. Cheap
        outside a window."""
        if delivery is None or key is None:
            return None
        window = self._windows.get(delivery[:3])
        if window is None or delivery[3] > window:
            return None
        with self._lock:
            row = self._db.execute("SELECT kind, seq, time FROM sent WHERE site = ? AND "
                                   "gateway = ? AND stream = ? AND dseq = ?",
                                   delivery).fetchone()
            if row is None:
                return None
            if (str(row[0]), int(row[1]), int(row[2])) == (key.kind, key.seq, key.time):
                return True
            if delivery[:3] in self._reused:
                return None
            self._reused.add(delivery[:3])
            return False

    def covers(self, delivery: tuple[str, str, int, int]) -> bool:
        """Whether (site, gateway, stream, dseq) is done already — at or below its stream's
        watermark, or done above it waiting for a hole to fill: a message carrying it again is
        a duplicate (gateway.ingest.dedup). The gateway deletes what a watermark covers by the
        same numbers, so the two sides trust one identity."""
        site, gateway, stream, dseq = delivery
        with self._lock:
            row = self._db.execute("SELECT upto FROM acks WHERE site = ? AND gateway = ? AND "
                                   "stream = ?", (site, gateway, stream)).fetchone()
            if row is None:
                return False
            if dseq <= int(row[0]):
                return True
            return self._db.execute(
                "SELECT 1 FROM above WHERE site = ? AND gateway = ? AND stream = ? AND dseq = ?",
                delivery).fetchone() is not None

    def latest(self) -> list[Watermark]:
        """Per gateway, the watermark of the stream heard from last (to publish again after a
        reconnect: a broker without persistence forgets retained messages)."""
        with self._lock:  # one pass in key order (SQLite: the bare columns of MAX's row)
            rows = self._db.execute(
                "SELECT site, gateway, stream, upto, highest, MAX(updated) FROM acks "
                "GROUP BY site, gateway").fetchall()
        return [Watermark(str(s), str(g), int(st), int(u), int(h))
                for s, g, st, u, h, _ in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
