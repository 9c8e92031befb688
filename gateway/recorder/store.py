"""Incident records on disk: one gzip-compressed JSON file per incident in
`<state dir>/incidents/`, mode 0600, replaced atomically; the oldest files go first when the
directory passes its disk budget or count. The record format is in docs/incidents.md.

A record is written from pieces of its JSON text, compressed as they come (`write`), so saving
a large one never holds its whole text; its `status` is the third key of its text, read from
the file's first bytes without reading the record (`status_of`), and changed by copying the
file through a decompressor and a compressor a piece at a time (`set_status`). Beside an open
incident's record lies its progress file (`progress_path_of`; gateway.recorder.progress)."""

from __future__ import annotations

import json
import logging
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from gateway.contract.records import INCIDENT_FORMAT
from gateway.contract.records import parse_record as parse_wire_record
from gateway.contract.vocab import ContractError
from gateway.storage import atomic_write, private_dir, temporary_of

log = logging.getLogger("roomwarden.incidents")

FORMAT = INCIDENT_FORMAT
SUFFIX = ".json.gz"
PROGRESS_SUFFIX = ".progress.gz"
"""An open incident's progress file (gateway.recorder.progress): `<id>.progress.gz`."""
ID_PATTERN = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9_.-]{1,80}-[0-9]{1,20}$")
HEAD = re.compile(rb'^\{"format":"roomwarden-incident/1","id":"([^"\\]{1,120})",'
                  rb'"status":"([a-z]{1,20})"')
"""The start of every record's text the keeper writes (`record_of`'s first keys, compact
JSON): its status is read from the file's first bytes."""
PIECE = 1 << 20
"""Bytes of text compressed (or of a file copied) at a time."""


class IncidentError(Exception):
    """An incident that does not exist or cannot be read (the message says why)."""


class _NotOurs(Exception):
    """A record whose text does not begin as a keeper's (`set_status`)."""


def dump(value: Any) -> str:
    """JSON text as records hold it (compact; NaN as `NaN`)."""
    return json.dumps(value, separators=(",", ":"), default=str, allow_nan=True)


def _batched(pieces: Iterable[str]) -> Iterator[str]:
    """The pieces joined into texts of about `PIECE` characters (a big piece alone)."""
    batch: list[str] = []
    size = 0
    for piece in pieces:
        batch.append(piece)
        size += len(piece)
        if size >= PIECE:
            yield "".join(batch)
            batch, size = [], 0
    if batch:
        yield "".join(batch)


def parse_record(data: bytes, what: str) -> dict[str, Any]:
    try:
        return parse_wire_record(data, what)
    except ContractError as exc:
        raise IncidentError(str(exc)) from None


_SHAPE: dict[str, type] = {"id": str, "status": str, "room": str, "trigger": dict,
                          "from_ns": int, "until_ns": int, "points": dict, "events": list}
_TRIGGER_SHAPE: dict[str, type] = {"rule": str, "subject": str, "ts": int}


def misshapen(record: dict[str, Any]) -> str | None:
    """The first key a record lacks or has of another type (None: it has them all)."""
    for key, kind in _SHAPE.items():
        if not isinstance(record.get(key), kind):
            return f"{key} missing or not a {kind.__name__}"
    for key, kind in _TRIGGER_SHAPE.items():
        if not isinstance(record["trigger"].get(key), kind):
            return f"trigger.{key} missing or not a {kind.__name__}"
    return None


class IncidentStore:
    def __init__(self, directory: Path, *, max_bytes: int = 64 * 2**20,
                 max_incidents: int = 500) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_incidents = max_incidents

    def path_of(self, incident_id: str) -> Path:
        if not ID_PATTERN.match(incident_id):
            raise IncidentError(f"not an incident id: {incident_id!r}")
        return self.directory / f"{incident_id}{SUFFIX}"

    def progress_path_of(self, incident_id: str) -> Path:
        """The progress file of an open incident (gateway.recorder.progress)."""
        return self.path_of(incident_id).with_name(f"{incident_id}{PROGRESS_SUFFIX}")

    def progress_ids(self) -> list[str]:
        """Incidents with a progress file (open ones; after a crash, those it left open)."""
        if not self.directory.is_dir():
            return []
        return sorted(p.name[:-len(PROGRESS_SUFFIX)]
                      for p in self.directory.glob(f"*{PROGRESS_SUFFIX}")
                      if ID_PATTERN.match(p.name[:-len(PROGRESS_SUFFIX)]))

    def save(self, record: dict[str, Any]) -> int:
        """Write (or replace) the record; returns its size on disk. Then keep the budget."""
        return self.write(record["id"], [dump(record)])

    def write(self, incident_id: str, pieces: Iterable[str]) -> int:
        """Write (or replace) a record from the pieces of its JSON text, compressed as they
        come (gzip, level 6, no time stamp: what `gzip.compress(..., 6, mtime=0)` would
        write); returns its size on disk. Then keep the budget."""
        private_dir(self.directory)
        path = self.path_of(incident_id)
        size = [0]

        def compressed() -> Iterator[bytes]:
            deflate = zlib.compressobj(6, zlib.DEFLATED, 31)
            for text in _batched(pieces):
                block = deflate.compress(text.encode())
                size[0] += len(block)
                yield block
            block = deflate.flush()
            size[0] += len(block)
            yield block

        atomic_write(path, compressed())
        self.prune(keep=path)
        return size[0]

    def status_of(self, incident_id: str) -> str | None:
        """The record's status read from the first bytes of its file (the record itself is
        not read), None if they do not begin as a keeper's record does. IncidentError if the
        file cannot be read."""
        try:
            with open(self.path_of(incident_id), "rb") as handle:
                head = handle.read(4096)
            text = zlib.decompressobj(wbits=31).decompress(head, 512)
        except zlib.error:
            return None
        except OSError as exc:
            raise IncidentError(f"incident {incident_id} cannot be read: {exc}") from exc
        match = HEAD.match(text)
        if match is None or match[1].decode() != incident_id:
            return None
        return match[2].decode()

    def set_status(self, incident_id: str, status: str) -> bool:
        """Replace the status at the head of the record's text (`status_of`), copying the
        file a piece at a time; the rest of the record is not parsed. False if its head is not
        a keeper's; IncidentError if the file is damaged (left as it was)."""
        path = self.path_of(incident_id)

        def copied(source: BinaryIO) -> Iterator[bytes]:
            inflate = zlib.decompressobj(wbits=31)
            deflate = zlib.compressobj(6, zlib.DEFLATED, 31)
            head: bytes | None = b""
            while not inflate.eof:
                data = inflate.unconsumed_tail or source.read(PIECE)
                if not data:
                    raise IncidentError(f"incident {incident_id} is truncated")
                text = inflate.decompress(data, PIECE)
                if head is not None:
                    head += text
                    match = HEAD.match(head)
                    if match is None and len(head) < 512:
                        continue
                    if match is None or match[1].decode() != incident_id:
                        raise _NotOurs
                    text = (head[:match.start(2)] + status.encode()
                            + head[match.end(2):])
                    head = None
                yield deflate.compress(text)
            if inflate.unused_data or source.read(1):
                raise IncidentError(f"incident {incident_id} has data after its end")
            yield deflate.flush()

        try:
            with open(path, "rb") as source:
                atomic_write(path, copied(source))
        except _NotOurs:
            return False
        except zlib.error as exc:
            raise IncidentError(f"incident {incident_id} cannot be read: {exc}") from None
        except FileNotFoundError:
            raise IncidentError(f"no incident {incident_id} in {self.directory}") from None
        except OSError as exc:
            raise IncidentError(f"incident {incident_id} cannot be rewritten: {exc}") from exc
        return True

    def remove_temporaries(self) -> list[str]:
        """Delete what saves cut short by a SIGKILL or a power loss left (`atomic_write`'s
        temporaries of record and progress files; nothing else): call it only where no save is
        running (the keeper, before its first save)."""
        removed: list[str] = []
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return removed
        for entry in entries:
            target = temporary_of(entry.name)
            suffix = next((s for s in (SUFFIX, PROGRESS_SUFFIX)
                           if target is not None and target.endswith(s)), None)
            if (target is None or suffix is None
                    or not ID_PATTERN.match(target[:-len(suffix)])
                    or not entry.is_file(follow_symlinks=False)):
                continue
            try:
                os.unlink(entry.path)
            except OSError as exc:
                log.error("event=incident_temporary_not_removed file=%s error=%s",
                          entry.name, exc)
                continue
            removed.append(entry.name)
        if removed:
            log.warning("event=incident_temporaries_removed count=%d reason=%r files=%s",
                        len(removed), "saves cut short (the process was killed, power lost)",
                        ",".join(removed[:10]))
        return removed

    def ids(self) -> list[str]:
        """Stored incident ids, oldest first (ids begin with the trigger time)."""
        if not self.directory.is_dir():
            return []
        return sorted(p.name[:-len(SUFFIX)] for p in self.directory.glob(f"*{SUFFIX}")
                      if ID_PATTERN.match(p.name[:-len(SUFFIX)]))

    def load(self, incident_id: str) -> dict[str, Any]:
        """The record; IncidentError if unreadable or without what listing and showing read
        (one such file broke `incident list` for all the others: the incident audit)."""
        what = f"incident {incident_id}"
        record = parse_record(self.read(incident_id), what)
        missing = misshapen(record)
        if missing is not None:
            raise IncidentError(f"{what} is not a whole record: {missing}")
        return record

    def read(self, incident_id: str) -> bytes:
        """The record file's bytes (as stored and sent over the uplink)."""
        try:
            return self.path_of(incident_id).read_bytes()
        except FileNotFoundError:
            raise IncidentError(f"no incident {incident_id} in {self.directory}") from None
        except OSError as exc:
            raise IncidentError(f"incident {incident_id} cannot be read: {exc}") from exc

    def prune(self, keep: Path | None = None) -> list[str]:
        """Delete the oldest records past `max_incidents` or `max_bytes` (never `keep`);
        oldest by their trigger's journal sequence (the id's last part), which only grows —
        not by the time in the id: a record made before the clock was set (a Pi without a
        real-time clock, before NTP: year 2000 or 1970) sorted first and went at the next save
        (the incident audit)."""
        files = [self.directory / f"{i}{SUFFIX}" for i in sorted(self.ids(), key=_by_seq)]
        sizes = {}
        for path in files:
            try:
                sizes[path] = path.stat().st_size
            except FileNotFoundError:
                continue
        total, count, removed = sum(sizes.values()), len(sizes), []
        for path, size in sizes.items():
            if total <= self.max_bytes and count <= self.max_incidents:
                break
            if path == keep:
                continue
            path.unlink(missing_ok=True)
            total, count = total - size, count - 1
            removed.append(path.name)
        if removed:
            log.warning("event=incidents_pruned count=%d reason=disk_budget files=%s",
                        len(removed), ",".join(removed[:10]))
        return removed


def _by_seq(incident_id: str) -> tuple[int, str]:
    return int(incident_id.rsplit("-", 1)[1]), incident_id
