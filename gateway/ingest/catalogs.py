"""Every point catalog the ingest has seen, keyed by (site, gateway, hash), kept in SQLite so
that a restarted ingest still knows the tags of batches that name an old catalog."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path

from gateway.contract.wire import PointCatalog, PointMeta
from gateway.storage import open_sqlite, private_dir

Key = tuple[str, str, str]


class CatalogStore:
    """Thread-safe; `get` is served from memory, `add` commits before it returns."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        private_dir(path.parent)
        self._db = open_sqlite(path, synchronous="FULL")  # why FULL: gateway.storage
        self._db.execute("CREATE TABLE IF NOT EXISTS catalogs (site TEXT NOT NULL, "
                         "gateway TEXT NOT NULL, hash TEXT NOT NULL, produced INTEGER NOT NULL, "
                         "points TEXT NOT NULL, PRIMARY KEY (site, gateway, hash))")
        self._cache: dict[Key, dict[str, PointMeta]] = {}
        for site, gateway, digest, points in self._db.execute(
                "SELECT site, gateway, hash, points FROM catalogs"):
            self._cache[(site, gateway, digest)] = {
                p: PointMeta.model_validate(m) for p, m in json.loads(points).items()}

    def __len__(self) -> int:
        return len(self._cache)

    def get(self, site: str, gateway: str, digest: str) -> Mapping[str, PointMeta] | None:
        return self._cache.get((site, gateway, digest))

    def add(self, catalog: PointCatalog) -> bool:
        """Remember `catalog` (durably); False if it was already known."""
        key = (catalog.site, catalog.gateway, catalog.catalog)
        with self._lock:
            if key in self._cache:
                return False
            points = {p: m.model_dump(mode="json") for p, m in catalog.points.items()}
            self._db.execute("INSERT OR IGNORE INTO catalogs VALUES (?, ?, ?, ?, ?)",
                             (*key, catalog.produced, json.dumps(points, sort_keys=True)))
            self._cache[key] = dict(catalog.points)
            return True

    def close(self) -> None:
        with self._lock:
            self._db.close()
