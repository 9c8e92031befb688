"""The central incident store: the gateways' incident records (issue 12), reassembled from
their `IncidentChunk` messages into the same bytes the gateway stored, in the ingest's own
SQLite file (`incidents.sqlite` next to the catalog store by default).

Why here and not in the time-series database: a record is one gzip-compressed JSON document
of up to 64 MiB (samples at poll resolution, events with actors and notes, output read-backs),
read whole to render one report. VictoriaMetrics drops strings; InfluxDB would keep a chunk as
a string field, but a report would then need a query per record and a reassembly anyway, and
the two stores would differ. One SQLite file works with every supported database, keeps the
exact bytes (the SHA-256 the gateway computed is checked on the reassembled record) and is what
`roomwarden incident --central` reads.

Chunks are stored as they come (any order, any number of times: a re-delivered chunk or a
record sent again is recognised and changes nothing). When a version's last chunk is in, the
record is put together, its size and SHA-256 checked, decompressed (bounded) and parsed; its
summary (room, status, trigger, drill flag) is kept beside it for listing, and its chunks are
deleted — all in one transaction, committed (synchronous FULL) before the ingest acknowledges
the message. Of two versions of one incident id the one the gateway sent later wins.

Bounds (`incidents:` in the central config): a record's size (`max_record_bytes`), the records
kept (`max_incidents`) and the disk budget of records and waiting chunks (`max_bytes`; the
oldest records go first); chunks of a version that stays incomplete for `partial_ttl` are
dropped. A chunk that breaks them, or completes a record that does not check, raises
`IncidentChunkError` with the reason: the ingest dead-letters it (payload included) and goes on.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from gateway.config.duration import Duration
from gateway.contract.wire import (
    MAX_INCIDENT_BYTES,
    ContractError,
    IncidentChunk,
    chunk_bytes,
    parse_record,
)
from gateway.storage import open_sqlite, open_sqlite_readonly, private_dir
from gateway.strict import StrictModel

log = logging.getLogger("roomwarden.ingest")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    site TEXT NOT NULL, gateway TEXT NOT NULL, id TEXT NOT NULL, sha256 TEXT NOT NULL,
    idx INTEGER NOT NULL, count INTEGER NOT NULL, size INTEGER NOT NULL,
    saved INTEGER NOT NULL, received INTEGER NOT NULL, data BLOB NOT NULL,
    UNIQUE (site, gateway, id, sha256, idx));
CREATE TABLE IF NOT EXISTS incidents (
    site TEXT NOT NULL, gateway TEXT NOT NULL, id TEXT NOT NULL, sha256 TEXT NOT NULL,
    size INTEGER NOT NULL, saved INTEGER NOT NULL, received INTEGER NOT NULL,
    status TEXT, room TEXT, severity TEXT, rule TEXT, subject TEXT, trigger_ts INTEGER,
    drill INTEGER NOT NULL DEFAULT 0, record BLOB NOT NULL,
    UNIQUE (site, gateway, id));
CREATE INDEX IF NOT EXISTS incidents_received ON incidents (received);
CREATE INDEX IF NOT EXISTS chunks_received ON chunks (received);
"""
SUMMARY = ("site", "gateway", "id", "status", "room", "severity", "rule", "subject",
           "trigger_ts", "drill", "size", "sha256", "received")


class CentralIncidentSettings(StrictModel):
    """`incidents:` of the central config: where and how much of the gateways' incident
    records the ingest keeps."""

    store: Path | None = None
    """The SQLite file; default `incidents.sqlite` next to `catalog_store`."""
    max_record_bytes: Annotated[int, Field(ge=64 * 1024, le=MAX_INCIDENT_BYTES)] = (
        MAX_INCIDENT_BYTES)
    """Largest record accepted (gzip-compressed, as the gateway stores it)."""
    max_incidents: Annotated[int, Field(ge=1, le=10_000_000)] = 100_000
    """Records kept at most (the oldest received go first)."""
    max_bytes: Annotated[int, Field(ge=2**20, le=2**44)] = 16 * 2**30
    """Disk budget of records and waiting chunks (the oldest records go first)."""
    partial_ttl: Duration = 7 * 24 * 3600.0
    """Chunks of a record version still incomplete after this long are dropped."""


class IncidentChunkError(ValueError):
    """A chunk the store refuses, or a record that does not check (the message says why)."""


class CentralIncidents:
    """Thread-safe (one lock). `readonly`: for `roomwarden incident --central` beside a
    running ingest (SQLite's WAL lets it read while the ingest writes)."""

    def __init__(self, path: Path, settings: CentralIncidentSettings | None = None, *,
                 readonly: bool = False) -> None:
        self.path = path
        self.settings = settings or CentralIncidentSettings()
        self._lock = threading.Lock()
        if readonly:
            if not path.exists():
                raise IncidentChunkError(f"no central incident store at {path}")
            self._db = open_sqlite_readonly(path)
        else:
            private_dir(path.parent)
            self._db = open_sqlite(path, synchronous="FULL")
            self._db.executescript(_SCHEMA)

    # ------------------------------------------------------------------ writing (ingest)

    def add(self, chunk: IncidentChunk, now_ns: int) -> str:
        """Store one chunk; `stored`, `complete` (it finished its record), `duplicate` (seen
        before, or its version is stored) or `superseded` (a later version is stored).
        IncidentChunkError: refused (the reason), nothing changed except a corrupt version's
        chunks being dropped."""
        s = self.settings
        if chunk.size > s.max_record_bytes:
            raise IncidentChunkError(
                f"incident {chunk.id} of {chunk.site}/{chunk.gateway}: {chunk.size} bytes "
                f"exceed max_record_bytes {s.max_record_bytes}")
        try:
            data = chunk_bytes(chunk)
        except ContractError as exc:
            raise IncidentChunkError(str(exc)) from None
        key = (chunk.site, chunk.gateway, chunk.id)
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                outcome = self._add(db, chunk, data, key, now_ns)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        if isinstance(outcome, IncidentChunkError):  # its chunks are gone (committed)
            raise outcome
        if outcome == "complete":
            log.info("event=incident_stored site=%s gateway=%s id=%s bytes=%d", *key,
                     chunk.size)
        return outcome

    def _add(self, db: sqlite3.Connection, chunk: IncidentChunk, data: bytes,
             key: tuple[str, str, str], now_ns: int) -> str | IncidentChunkError:
        row = db.execute("SELECT sha256, saved FROM incidents WHERE site = ? AND gateway = ? "
                         "AND id = ?", key).fetchone()
        if row is not None and row[0] == chunk.sha256:
            return "duplicate"
        if row is not None and row[1] >= chunk.saved:
            return "superseded"
        version = (*key, chunk.sha256)
        have = db.execute("SELECT data FROM chunks WHERE site = ? AND gateway = ? AND id = ? "
                          "AND sha256 = ? AND idx = ?", (*version, chunk.index)).fetchone()
        if have is not None:
            if bytes(have[0]) != data:
                raise IncidentChunkError(
                    f"incident {chunk.id} of {chunk.site}/{chunk.gateway}: chunk "
                    f"{chunk.index} differs from the one received before")
            return "duplicate"
        self._make_room(db, len(data), now_ns)
        db.execute("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (*version, chunk.index, chunk.count, chunk.size, chunk.saved, now_ns, data))
        have_n = db.execute("SELECT COUNT(*) FROM chunks WHERE site = ? AND gateway = ? AND "
                            "id = ? AND sha256 = ?", version).fetchone()[0]
        if have_n < chunk.count:
            return "stored"
        parts = [bytes(r[0]) for r in db.execute(
            "SELECT data FROM chunks WHERE site = ? AND gateway = ? AND id = ? AND sha256 = ? "
            "ORDER BY idx", version)]
        db.execute("DELETE FROM chunks WHERE site = ? AND gateway = ? AND id = ? AND "
                   "sha256 = ?", version)
        whole = b"".join(parts)
        try:
            summary = self._check(chunk, whole)
        except IncidentChunkError as exc:  # a corrupt version: its chunks stay deleted
            return exc
        db.execute("DELETE FROM incidents WHERE site = ? AND gateway = ? AND id = ?", key)
        db.execute("INSERT INTO incidents (site, gateway, id, sha256, size, saved, received, "
                   "status, room, severity, rule, subject, trigger_ts, drill, record) VALUES "
                   "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (*key, chunk.sha256, len(whole), chunk.saved, now_ns, *summary, whole))
        self._prune(db)
        return "complete"

    def _check(self, chunk: IncidentChunk, whole: bytes) -> tuple[Any, ...]:
        """Size, hash and content of a reassembled record; its summary columns."""
        what = f"incident {chunk.id} of {chunk.site}/{chunk.gateway}"
        if len(whole) != chunk.size or hashlib.sha256(whole).hexdigest() != chunk.sha256:
            raise IncidentChunkError(f"{what}: the reassembled record does not match its "
                                     f"size and sha256 (dropped; the gateway keeps its copy)")
        try:
            record = parse_record(whole, what)
        except ContractError as exc:
            raise IncidentChunkError(str(exc)) from None
        named = (record.get("id"), record.get("site", chunk.site),
                 record.get("gateway", chunk.gateway))
        if named != (chunk.id, chunk.site, chunk.gateway):
            raise IncidentChunkError(f"{what}: the record names {named[0]} of "
                                     f"{named[1]}/{named[2]}")
        trigger = record.get("trigger")
        if not isinstance(trigger, dict):
            trigger = {}

        def text(value: object) -> str | None:
            return None if value is None else str(value)[:200]

        ts = trigger.get("ts")
        return (text(record.get("status")), text(record.get("room")),
                text(trigger.get("severity")), text(trigger.get("rule")),
                text(trigger.get("subject")),
                ts if isinstance(ts, int) and not isinstance(ts, bool) else None,
                int(record.get("kind") == "drill" or bool(record.get("drill"))
                    or trigger.get("drill") is True))

    def _used(self, db: sqlite3.Connection) -> int:
        return int(db.execute("SELECT (SELECT COALESCE(SUM(size), 0) FROM incidents) + "
                              "(SELECT COALESCE(SUM(LENGTH(data)), 0) FROM chunks)"
                              ).fetchone()[0])

    def _make_room(self, db: sqlite3.Connection, need: int, now_ns: int) -> None:
        """Old incomplete versions go; then the oldest records until `need` more bytes fit."""
        ttl = int(self.settings.partial_ttl * 1e9)
        db.execute("DELETE FROM chunks WHERE received < ?", (now_ns - ttl,))
        budget = self.settings.max_bytes
        while self._used(db) + need > budget:
            oldest = db.execute("SELECT rowid, site, gateway, id FROM incidents ORDER BY "
                                "received LIMIT 1").fetchone()
            if oldest is None:
                raise IncidentChunkError(
                    f"the central incident store is full: waiting chunks fill max_bytes "
                    f"{budget}")
            db.execute("DELETE FROM incidents WHERE rowid = ?", (oldest[0],))
            log.warning("event=incident_pruned site=%s gateway=%s id=%s reason=disk_budget",
                        *oldest[1:])

    def _prune(self, db: sqlite3.Connection) -> None:
        excess = db.execute("SELECT COUNT(*) FROM incidents").fetchone()[0] - \
            self.settings.max_incidents
        if excess > 0:
            db.execute("DELETE FROM incidents WHERE rowid IN (SELECT rowid FROM incidents "
                       "ORDER BY received LIMIT ?)", (excess,))
            log.warning("event=incidents_pruned count=%d reason=max_incidents", excess)

    # ------------------------------------------------------------------ reading (CLI)

    def summaries(self) -> list[dict[str, Any]]:
        """Every stored record's summary, by trigger time."""
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(SUMMARY)} FROM incidents "
                                    "ORDER BY trigger_ts, id").fetchall()
        return [dict(zip(SUMMARY, row, strict=True)) for row in rows]

    def waiting(self) -> list[dict[str, Any]]:
        """Record versions with chunks still missing: site, gateway, id, have, count."""
        with self._lock:
            rows = self._db.execute("SELECT site, gateway, id, COUNT(*), MAX(count) FROM "
                                    "chunks GROUP BY site, gateway, id, sha256").fetchall()
        return [dict(zip(("site", "gateway", "id", "have", "count"), r, strict=True))
                for r in rows]

    def read(self, incident_id: str, gateway: str | None = None) -> tuple[str, str, bytes]:
        """(site, gateway, record file bytes) of one incident; IncidentChunkError if none, or
        if the id is ambiguous without `gateway` (it names each gateway that has it)."""
        sql = "SELECT site, gateway, record FROM incidents WHERE id = ?"
        args: tuple[str, ...] = (incident_id,)
        if gateway is not None:
            sql, args = sql + " AND gateway = ?", (incident_id, gateway)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        if not rows:
            raise IncidentChunkError(f"no incident {incident_id}"
                                     + (f" of {gateway}" if gateway else "")
                                     + f" in {self.path}")
        if len(rows) > 1:
            names = ", ".join(f"{r[0]}/{r[1]}" for r in rows)
            raise IncidentChunkError(f"incident {incident_id} was sent by {names}: "
                                     "say which with --gateway")
        return rows[0][0], rows[0][1], bytes(rows[0][2])

    def load(self, incident_id: str, gateway: str | None = None) -> dict[str, Any]:
        site, gw, data = self.read(incident_id, gateway)
        try:
            return parse_record(data, f"incident {incident_id} of {site}/{gw}")
        except ContractError as exc:
            raise IncidentChunkError(str(exc)) from None

    def close(self) -> None:
        with self._lock:
            self._db.close()
