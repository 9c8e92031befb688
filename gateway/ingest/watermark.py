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

SQLite (WAL, synchronous FULL: a watermark that went back after a power cut would only make
gateways send again, but one that went forward would lose data, and the write order — database,
then keys, then the watermark — keeps it behind). Several ingest instances on one host may share
the file (one per shared subscription group): each update is one IMMEDIATE transaction.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from gateway.storage import open_sqlite, private_dir

StreamKey = tuple[str, str, int]
"""(site, gateway, stream)."""


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
"""


class AckStore:
    def __init__(self, path: Path) -> None:
        private_dir(path.parent)
        self._lock = threading.Lock()
        self._db = open_sqlite(path, synchronous="FULL")
        self._db.executescript(_SCHEMA)

    def record(self, done: Iterable[tuple[str, str, int, int]],
               floors: Iterable[tuple[str, str, int, int]], now_ns: int) -> list[Watermark]:
        """`done`: (site, gateway, stream, dseq) handled for good; `floors`: (site, gateway,
        stream, floor) from gateway states. Returns the watermarks that moved."""
        numbers: dict[StreamKey, set[int]] = defaultdict(set)
        for site, gateway, stream, dseq in done:
            numbers[(site, gateway, stream)].add(dseq)
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
                    mark = self._update(key, seqs, lowest.get(key, 0), now_ns)
                    if mark is not None:
                        moved.append(mark)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return moved

    def _update(self, key: StreamKey, seqs: set[int], floor: int, now_ns: int
                ) -> Watermark | None:
        db = self._db
        row = db.execute("SELECT upto, highest FROM acks WHERE site = ? AND gateway = ? AND "
                         "stream = ?", key).fetchone()
        upto, highest = (int(row[0]), int(row[1])) if row else (0, 0)
        start = upto
        top = highest
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
        if row is not None and upto == start and top == highest:
            return None
        db.execute("INSERT INTO acks VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (site, gateway, "
                   "stream) DO UPDATE SET upto = excluded.upto, highest = excluded.highest, "
                   "updated = excluded.updated", (*key, upto, top, now_ns))
        return Watermark(*key, upto, top)

    def latest(self) -> list[Watermark]:
        """Per gateway, the watermark of the stream heard from last (to publish again after a
        reconnect: a broker without persistence forgets retained messages)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT site, gateway, stream, upto, highest FROM acks AS a WHERE updated = "
                "(SELECT MAX(updated) FROM acks AS b WHERE b.site = a.site AND "
                "b.gateway = a.gateway)").fetchall()
        return [Watermark(str(s), str(g), int(st), int(u), int(h)) for s, g, st, u, h in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
