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
kept (`max_incidents`) and the disk budget of records and waiting chunks (`max_bytes`), both
shared out per gateway so that one gateway's records — or its chunks of records that never
complete — push out only its own (gateway.ingest.incident_room says who gives way, and why);
chunks of a version that stays incomplete for `partial_ttl` are dropped. A chunk that breaks
them, or completes a record that does not check, raises `IncidentChunkError` with the reason:
the ingest dead-letters it (payload included, up to the dead-letter log's limit) and goes on.

A record larger than its gateway's share of `max_bytes` goes to the **quarantine**: the same
tables, flagged, under their own budget (`quarantine_bytes`, shared out the same way), read by
`roomwarden incident --central` like any record. Each of its chunks raises `IncidentQuarantined`
once committed, so it is dead-lettered (counted, logged) and acknowledged. Why not refuse it
unacknowledged, for the gateway to send again later: the gateway's outbox lets go of an entry
only when the ingest's watermark covers its number, so one number never done holds every later
telemetry batch and alarm event of that gateway in its outbox until its disk budget drops
them — telemetry first, then the record itself — while the refused chunk is published again as
a hole after every acknowledgement (gateway.uplink.delivery); and nothing tells when the share
will be larger. The dead-letter log alone keeps 1 KiB of a chunk: the record would be lost.
The quarantine keeps it whole, bounded.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, model_validator

from gateway.config.duration import Duration
from gateway.contract.wire import (
    MAX_INCIDENT_BYTES,
    ContractError,
    IncidentChunk,
    chunk_bytes,
    parse_record,
)
from gateway.ingest import incident_room as room
from gateway.storage import open_sqlite, open_sqlite_readonly, private_dir
from gateway.strict import StrictModel

log = logging.getLogger("roomwarden.ingest")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    site TEXT NOT NULL, gateway TEXT NOT NULL, id TEXT NOT NULL, sha256 TEXT NOT NULL,
    idx INTEGER NOT NULL, count INTEGER NOT NULL, size INTEGER NOT NULL,
    saved INTEGER NOT NULL, received INTEGER NOT NULL, data BLOB NOT NULL,
    quarantined INTEGER NOT NULL DEFAULT 0,
    UNIQUE (site, gateway, id, sha256, idx));
CREATE TABLE IF NOT EXISTS incidents (
    site TEXT NOT NULL, gateway TEXT NOT NULL, id TEXT NOT NULL, sha256 TEXT NOT NULL,
    size INTEGER NOT NULL, saved INTEGER NOT NULL, received INTEGER NOT NULL,
    status TEXT, room TEXT, severity TEXT, rule TEXT, subject TEXT, trigger_ts INTEGER,
    drill INTEGER NOT NULL DEFAULT 0, record BLOB NOT NULL,
    quarantined INTEGER NOT NULL DEFAULT 0,
    UNIQUE (site, gateway, id));
CREATE INDEX IF NOT EXISTS incidents_received ON incidents (received);
CREATE INDEX IF NOT EXISTS chunks_received ON chunks (received);
"""
SUMMARY = ("site", "gateway", "id", "status", "room", "severity", "rule", "subject",
           "trigger_ts", "drill", "size", "sha256", "received", "quarantined")


class CentralIncidentSettings(StrictModel):
    """`incidents:` of the central config: where and how much of the gateways' incident
    records the ingest keeps."""

    store: Path | None = None
    """The SQLite file; default `incidents.sqlite` next to `catalog_store`."""
    max_record_bytes: Annotated[int, Field(ge=64 * 1024, le=MAX_INCIDENT_BYTES)] = (
        MAX_INCIDENT_BYTES)
    """Largest record accepted (gzip-compressed, as the gateway stores it)."""
    max_incidents: Annotated[int, Field(ge=1, le=10_000_000)] = 100_000
    """Records kept at most. Shared out per gateway: when the store is full, a gateway holding
    more than `max_incidents` ÷ (gateways with records) loses its oldest received first."""
    max_bytes: Annotated[int, Field(ge=2**20, le=2**44)] = 16 * 2**30
    """Disk budget of records and waiting chunks. Shared out per gateway: when it is full, a
    gateway over `max_bytes` ÷ (gateways holding something) gives way — its incomplete records
    first, then its oldest; one gateway's waiting chunks are capped at twice
    `max_record_bytes`. A record larger than its gateway's share goes to the quarantine."""
    quarantine_bytes: Annotated[int, Field(ge=2**20, le=2**44)] = 256 * 2**20
    """Disk budget of the quarantine: records that do not fit their gateway's share of
    `max_bytes`, kept whole (and dead-lettered) apart from it, shared out per gateway the same
    way. At least `max_record_bytes`."""
    partial_ttl: Duration = 7 * 24 * 3600.0
    """Chunks of a record version still incomplete after this long are dropped."""

    @model_validator(mode="after")
    def _quarantine_holds_a_record(self) -> CentralIncidentSettings:
        if self.quarantine_bytes < self.max_record_bytes:
            raise ValueError(f"quarantine_bytes {self.quarantine_bytes} must be at least "
                             f"max_record_bytes {self.max_record_bytes}")
        return self


class IncidentChunkError(ValueError):
    """A chunk the store refuses, or a record that does not check (the message says why)."""


class IncidentQuarantined(IncidentChunkError):
    """A chunk kept (committed) in the quarantine, not the store proper: its record does not
    fit its gateway's share. The ingest dead-letters it like a refused chunk — acknowledged,
    so the gateway's outbox goes on — and the record stays readable whole. `complete`: this
    chunk completed its record."""

    def __init__(self, message: str, *, complete: bool) -> None:
        super().__init__(message)
        self.complete = complete


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
            for table in ("incidents", "chunks"):  # a store made before the quarantine
                if "quarantined" not in self._columns(table):
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN quarantined INTEGER "
                                     "NOT NULL DEFAULT 0")
            self._db.executescript(room.INDEXES)
        self._summary = ", ".join(
            "0 AS quarantined" if name == "quarantined" and name not in self._columns(
                "incidents") else name for name in SUMMARY)

    def _columns(self, table: str) -> set[str]:
        return {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}

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
        quarantined = isinstance(outcome, IncidentQuarantined)
        if outcome == "complete" or (isinstance(outcome, IncidentQuarantined)
                                     and outcome.complete):
            log.info("event=incident_stored site=%s gateway=%s id=%s bytes=%d area=%s", *key,
                     chunk.size, "quarantine" if quarantined else "store")
        if isinstance(outcome, IncidentChunkError):  # committed: quarantined, or gone
            raise outcome
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
        ttl = int(self.settings.partial_ttl * 1e9)
        db.execute("DELETE FROM chunks WHERE received < ?", (now_ns - ttl,))
        area = self._area(db, chunk, version, len(data))
        if isinstance(area, IncidentChunkError):
            return area
        db.execute("INSERT INTO chunks (site, gateway, id, sha256, idx, count, size, saved, "
                   "received, data, quarantined) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (*version, chunk.index, chunk.count, chunk.size, chunk.saved, now_ns, data,
                    area))
        have_n = db.execute("SELECT COUNT(*) FROM chunks WHERE site = ? AND gateway = ? AND "
                            "id = ? AND sha256 = ?", version).fetchone()[0]
        if have_n < chunk.count:
            return self._quarantined(chunk, complete=False) if area else "stored"
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
                   "status, room, severity, rule, subject, trigger_ts, drill, record, "
                   "quarantined) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (*key, chunk.sha256, len(whole), chunk.saved, now_ns, *summary, whole, area))
        if area:
            return self._quarantined(chunk, complete=True)
        room.prune_count(db, self.settings.max_incidents, (chunk.site, chunk.gateway))
        return "complete"

    def _area(self, db: sqlite3.Connection, chunk: IncidentChunk, version: room.Version,
              need: int) -> int | IncidentChunkError:
        """Where a new chunk of `version` goes, room made for it (gateway.ingest.incident_room):
        0 the store; 1 the quarantine, when its record does not fit its gateway's share of
        `max_bytes`; an error (the version's chunks gone) when it fits neither."""
        s, gw = self.settings, (chunk.site, chunk.gateway)
        cap = room.WAITING_RECORDS * s.max_record_bytes
        area = db.execute("SELECT MAX(quarantined) FROM chunks WHERE site = ? AND gateway = ? "
                          "AND id = ? AND sha256 = ?", version).fetchone()[0]
        if area is None:  # the version's first chunk
            use = room.usage(db, 0)
            area = int(chunk.size > room.share(s.max_bytes, use, gw))
            if area:
                log.warning("event=incident_quarantined site=%s gateway=%s id=%s bytes=%d "
                            "share=%d gateways=%d reason=over_share", *gw, chunk.id, chunk.size,
                            room.share(s.max_bytes, use, gw), len(use.keys() | {gw}))
        if area == 0:
            room.cap_waiting(db, 0, version, need, cap)
            if room.make_room(db, 0, s.max_bytes, version, chunk.size, need):
                return 0
            db.execute("UPDATE chunks SET quarantined = 1 WHERE site = ? AND gateway = ? AND "
                       "id = ? AND sha256 = ?", version)
            log.warning("event=incident_quarantined site=%s gateway=%s id=%s bytes=%d "
                        "reason=share_shrank", *gw, chunk.id, chunk.size)
        room.cap_waiting(db, 1, version, need, cap)
        if room.make_room(db, 1, s.quarantine_bytes, version, chunk.size, need):
            return 1
        db.execute("DELETE FROM chunks WHERE site = ? AND gateway = ? AND id = ? AND "
                   "sha256 = ?", version)
        log.error("event=incident_not_kept site=%s gateway=%s id=%s bytes=%d "
                  "reason=quarantine_share", *gw, chunk.id, chunk.size)
        return IncidentChunkError(
            f"incident {chunk.id} of {chunk.site}/{chunk.gateway}: {chunk.size} bytes fit "
            f"neither the gateway's share of max_bytes {s.max_bytes} nor of quarantine_bytes "
            f"{s.quarantine_bytes} (not kept here; the gateway keeps its copy)")

    def _quarantined(self, chunk: IncidentChunk, *, complete: bool) -> IncidentQuarantined:
        return IncidentQuarantined(
            f"incident {chunk.id} of {chunk.site}/{chunk.gateway}: its record ({chunk.size} "
            f"bytes) does not fit the gateway's share of max_bytes {self.settings.max_bytes}; "
            f"it {'is' if complete else 'waits to be'} kept whole in the quarantine of "
            f"{self.path} (roomwarden incident --central)", complete=complete)

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

    # ------------------------------------------------------------------ reading (CLI)

    def summaries(self) -> list[dict[str, Any]]:
        """Every stored record's summary, by trigger time."""
        with self._lock:
            rows = self._db.execute(f"SELECT {self._summary} FROM incidents "
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
