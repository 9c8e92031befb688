"""The point catalogs the ingest keeps, keyed by (site, gateway, hash), in memory and in SQLite
so that a restarted ingest still knows the tags of batches that name a recent catalog.

Bounded (docs/limits.md, *Central ingest: point catalogs*): a gateway publishes its current
catalog on every connect and a new one when its config changes, and any gateway identity can
publish as many distinct catalogs on its own `meta` topic as it likes — each up to 2 MiB, which
take about seven times that in memory once parsed. So the store keeps only what can still be
needed:

* per gateway the `MAX_CATALOGS_PER_GATEWAY` newest by arrival (a catalog published again
  counts as arriving again: it is the gateway's current one): its current catalog and the few
  before it that batches still in its outbox may name;
* in all at most `MAX_CATALOG_BYTES` of stored catalog (the JSON of its points, as on disk).
  Beyond that, catalogs go from the gateway holding the most bytes — first the gateways' older
  catalogs, then, only if every gateway is down to its newest, newest ones — so a gateway
  flooding its `meta` topic evicts its own catalogs first, not its neighbours' current ones.
  A catalog larger than the whole budget is refused.

An evicted catalog goes from memory and disk at once (one transaction with the new catalog).
Batches in flight do not hold it: a batch is turned into lines when it arrives (the service's
network thread), so only a batch that arrived before its catalog still looks it up, on the
writer's next round after the catalog arrives — the gateway would have to publish
`MAX_CATALOGS_PER_GATEWAY` newer ones meanwhile (or be the heaviest in a full store) to evict
it first. A batch naming an evicted catalog is treated as one naming a catalog never received
(gateway.ingest.writer): held unacknowledged while the gateway is asked for its catalog
(`request_state`), written when it arrives again, dead-lettered (payload included) after
`catalog_wait` or beyond its gateway's share of the parked batches (`writer.shed`). Evictions
are logged `event=catalog_evicted reason=max_per_gateway|max_bytes` (refusals
`event=catalog_refused`): the first of each reason at once, then at most one line a minute
per reason, counting the evictions since the last line. At start the store loads at most the
limits (newest first) and deletes the rest from disk (`event=catalogs_pruned`).
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from gateway.contract.wire import PointCatalog, PointMeta
from gateway.records import dataclass
from gateway.storage import open_sqlite, private_dir

log = logging.getLogger("roomwarden.ingest")

Key = tuple[str, str, str]
"""(site, gateway, catalog hash)"""
GatewayKey = tuple[str, str]

MAX_CATALOGS_PER_GATEWAY = 4
"""Catalogs kept per gateway (site, gateway), the newest by arrival: the current one and three
before it — config changes whose batches may still wait in the gateway's outbox."""
MAX_CATALOG_BYTES = 64 * 2**20
"""Stored catalog bytes (the JSON of the points) kept in all, ≈ the same on disk and about seven
times that in memory (≈ 450 MB at most): about 30 catalogs of the largest size the contract
allows (2 MiB), 300 of 2,000 points or 3,000 of 200 points."""
LOG_INTERVAL = 60.0
"""At most one eviction line per reason this often (seconds), after the first."""
_WAL_LIMIT = 4 * 2**20
"""The WAL is truncated to this after a checkpoint (a catalog is written whole: up to 2 MiB)."""
_VACUUM_FREE = 8 * 2**20
"""At start, after pruning, the file is compacted when this much of it is free pages."""


@dataclass(frozen=True, slots=True)
class Held:
    """What the eviction policy knows of a stored catalog."""

    arrival: int
    """Order of arrival (larger: later); a catalog published again arrives again."""
    size: int
    """Stored bytes (the JSON of its points)."""


def overflow(held: Mapping[Key, Held], *, per_gateway: int, max_bytes: int,
             keep: Key | None = None) -> list[tuple[Key, str]]:
    """The catalogs to evict so that what remains of `held` is within the limits, each with its
    reason (`max_per_gateway`, `max_bytes`), in the order they go. `keep` (the catalog being
    added, the newest of its gateway) is never evicted."""
    by_gateway: dict[GatewayKey, list[Key]] = {}
    for key in sorted(held, key=lambda k: (held[k].arrival, k == keep)):
        by_gateway.setdefault(key[:2], []).append(key)  # oldest first, `keep` last
    victims: list[tuple[Key, str]] = []
    for keys in by_gateway.values():
        excess = max(0, len(keys) - per_gateway)
        victims.extend((k, "max_per_gateway") for k in keys[:excess])
        del keys[:excess]
    gw_bytes = {gw: sum(held[k].size for k in keys) for gw, keys in by_gateway.items()}
    total = sum(gw_bytes.values())
    # the gateway holding the most bytes goes first, its oldest catalog; the older catalogs of
    # gateways with more than one before anyone's newest
    heap: list[tuple[int, int, int, GatewayKey]] = []

    def push(gw: GatewayKey) -> None:
        keys = by_gateway[gw]
        if keys and keys[0] != keep:
            heapq.heappush(heap, (-int(len(keys) > 1), -gw_bytes[gw], held[keys[0]].arrival,
                                  gw))

    for gw in by_gateway:
        push(gw)
    while total > max_bytes and heap:
        gw = heapq.heappop(heap)[3]
        key = by_gateway[gw].pop(0)
        gw_bytes[gw] -= held[key].size
        total -= held[key].size
        victims.append((key, "max_bytes"))
        push(gw)
    return victims


class _Throttle:
    """One log line per reason at once, then at most one per `interval`, with the count of the
    events since the last line."""

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def due(self, reason: str, n: int = 1) -> int:
        """Count `n` events of `reason`; the count to log now (0: stay quiet)."""
        self._count[reason] = self._count.get(reason, 0) + n
        now = self._clock()
        last = self._last.get(reason)
        if last is not None and now - last < self.interval:
            return 0
        self._last[reason] = now
        return self._count.pop(reason)


class CatalogStore:
    """Thread-safe; `get` is served from memory, `add` commits (with its evictions) before it
    returns. `max_per_gateway` and `max_bytes` default to the module's limits."""

    def __init__(self, path: Path, *, max_per_gateway: int | None = None,
                 max_bytes: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_per_gateway = (MAX_CATALOGS_PER_GATEWAY if max_per_gateway is None
                                else max_per_gateway)
        self.max_bytes = MAX_CATALOG_BYTES if max_bytes is None else max_bytes
        if self.max_per_gateway < 1 or self.max_bytes < 1:
            raise ValueError("the catalog limits must be at least 1")
        self._lock = threading.Lock()
        self._throttle = _Throttle(LOG_INTERVAL, clock)
        private_dir(path.parent)
        self._db = open_sqlite(path, synchronous="FULL",  # why FULL: gateway.storage
                               journal_size_limit=_WAL_LIMIT)
        self._db.execute("CREATE TABLE IF NOT EXISTS catalogs (site TEXT NOT NULL, "
                         "gateway TEXT NOT NULL, hash TEXT NOT NULL, produced INTEGER NOT NULL, "
                         "points TEXT NOT NULL, arrival INTEGER NOT NULL DEFAULT 0, "
                         "PRIMARY KEY (site, gateway, hash))")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(catalogs)")}
        if "arrival" not in columns:  # a store of an older version: rowid is its arrival order
            with self._transaction():
                self._db.execute("ALTER TABLE catalogs ADD COLUMN arrival INTEGER NOT NULL "
                                 "DEFAULT 0")
                self._db.execute("UPDATE catalogs SET arrival = rowid")
        self._cache: dict[Key, dict[str, PointMeta]] = {}
        self._held: dict[Key, Held] = {}
        self._newest: dict[GatewayKey, Key] = {}
        self._bytes = 0
        self._arrival = 0
        self._load()

    def _load(self) -> None:
        """The newest catalogs within the limits into memory; the rest deleted from disk."""
        held = {(site, gateway, digest): Held(arrival, size) for site, gateway, digest,
                arrival, size in self._db.execute(
                    "SELECT site, gateway, hash, arrival, length(CAST(points AS BLOB)) "
                    "FROM catalogs")}
        self._arrival = max((h.arrival for h in held.values()), default=0)
        victims = overflow(held, per_gateway=self.max_per_gateway, max_bytes=self.max_bytes)
        if victims:
            with self._transaction():
                self._delete([k for k, _ in victims])
            reasons: dict[str, int] = {}
            for _, reason in victims:
                reasons[reason] = reasons.get(reason, 0) + 1
            log.warning("event=catalogs_pruned count=%d %s kept=%d max_per_gateway=%d "
                        "max_bytes=%d", len(victims),
                        " ".join(f"{r}={n}" for r, n in sorted(reasons.items())),
                        len(held) - len(victims), self.max_per_gateway, self.max_bytes)
            for key, _ in victims:
                del held[key]
            self._compact()
        for key, h in sorted(held.items(), key=lambda kv: kv[1].arrival):
            row = self._db.execute("SELECT points FROM catalogs WHERE site = ? AND gateway = ? "
                                   "AND hash = ?", key).fetchone()
            self._remember(key, {p: PointMeta.model_validate(m)
                                 for p, m in json.loads(row[0]).items()}, h)

    def _compact(self) -> None:
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0] * \
            self._db.execute("PRAGMA page_size").fetchone()[0]
        if free >= _VACUUM_FREE:
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _delete(self, keys: Iterable[Key]) -> None:
        self._db.executemany("DELETE FROM catalogs WHERE site = ? AND gateway = ? AND hash = ?",
                             list(keys))

    def _remember(self, key: Key, points: dict[str, PointMeta], held: Held) -> None:
        self._cache[key] = points
        self._held[key] = held
        self._bytes += held.size
        newest = self._newest.get(key[:2])
        if newest is None or self._held[newest].arrival < held.arrival:
            self._newest[key[:2]] = key

    def _forget(self, key: Key) -> None:
        del self._cache[key]
        self._bytes -= self._held.pop(key).size
        gw = key[:2]
        if self._newest.get(gw) == key:
            mine = [k for k in self._held if k[:2] == gw]
            if mine:
                self._newest[gw] = max(mine, key=lambda k: self._held[k].arrival)
            else:
                del self._newest[gw]

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def bytes(self) -> int:
        """Stored bytes of the catalogs kept (what `max_bytes` bounds)."""
        return self._bytes

    def entries(self) -> dict[Key, Held]:
        """The catalogs kept, with their arrival order and size."""
        with self._lock:
            return dict(self._held)

    def get(self, site: str, gateway: str, digest: str) -> Mapping[str, PointMeta] | None:
        return self._cache.get((site, gateway, digest))

    def add(self, catalog: PointCatalog) -> bool:
        """Remember `catalog` (durably), evicting what no longer fits; False if it was already
        known (it then counts as arriving again) or is larger than `max_bytes` (refused)."""
        key = (catalog.site, catalog.gateway, catalog.catalog)
        with self._lock:
            if key in self._cache:
                if self._newest.get(key[:2]) != key:  # published again: the current one
                    self._arrival += 1
                    self._db.execute("UPDATE catalogs SET arrival = ? WHERE site = ? AND "
                                     "gateway = ? AND hash = ?", (self._arrival, *key))
                    self._held[key] = Held(self._arrival, self._held[key].size)
                    self._newest[key[:2]] = key
                return False
            points = {p: m.model_dump(mode="json") for p, m in catalog.points.items()}
            text = json.dumps(points, sort_keys=True)
            size = len(text.encode())
            if size > self.max_bytes:
                self._say("catalog_refused", "max_bytes", key, f" size={size}")
                return False
            held = Held(self._arrival + 1, size)
            victims = overflow({**self._held, key: held}, per_gateway=self.max_per_gateway,
                               max_bytes=self.max_bytes, keep=key)
            with self._transaction():
                self._delete([k for k, _ in victims])  # first: the new one reuses their pages
                self._db.execute("INSERT OR REPLACE INTO catalogs (site, gateway, hash, "
                                 "produced, points, arrival) VALUES (?, ?, ?, ?, ?, ?)",
                                 (*key, catalog.produced, text, held.arrival))
            self._arrival = held.arrival
            for victim, _ in victims:
                self._forget(victim)
            self._remember(key, dict(catalog.points), held)
            for victim, reason in victims:
                self._say("catalog_evicted", reason, victim)
            return True

    def _say(self, event: str, reason: str, key: Key, detail: str = "") -> None:
        """One line per (event, reason) at once, then at most one per LOG_INTERVAL: the latest
        catalog, how many since the last line (`count`), and what the store holds."""
        n = self._throttle.due(f"{event} {reason}")
        if n:
            log.warning("event=%s reason=%s site=%s gateway=%s catalog=%s%s count=%d kept=%d "
                        "bytes=%d max_per_gateway=%d max_bytes=%d", event, reason, *key, detail,
                        n, len(self._cache), self._bytes, self.max_per_gateway, self.max_bytes)

    def close(self) -> None:
        with self._lock:
            self._db.close()
