"""Incident records on disk: one gzip-compressed JSON file per incident in
`<state dir>/incidents/`, mode 0600, replaced atomically; the oldest files go first when the
directory passes its disk budget or count. The record format is in docs/incidents.md."""

from __future__ import annotations

import json
import logging
import re
import zlib
from pathlib import Path
from typing import Any

from gateway.contract.wire import INCIDENT_FORMAT, ContractError
from gateway.contract.wire import parse_record as parse_wire_record
from gateway.storage import atomic_write, private_dir

log = logging.getLogger("roomwarden.incidents")

FORMAT = INCIDENT_FORMAT
SUFFIX = ".json.gz"
ID_PATTERN = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9_.-]{1,80}-[0-9]{1,20}$")


class IncidentError(Exception):
    """An incident that does not exist or cannot be read (the message says why)."""


def parse_record(data: bytes, what: str) -> dict[str, Any]:
    try:
        return parse_wire_record(data, what)
    except ContractError as exc:
        raise IncidentError(str(exc)) from None


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

    def save(self, record: dict[str, Any]) -> int:
        """Write (or replace) the record; returns its size on disk. Then keep the budget."""
        private_dir(self.directory)
        # gzip.compress(..., 6, mtime=0) is exactly this call; the gzip module itself would
        # stay loaded in every gateway for it (0.25 MiB)
        data = zlib.compress(json.dumps(record, separators=(",", ":"), default=str,
                                        allow_nan=True).encode(), 6, wbits=31)
        path = self.path_of(record["id"])
        atomic_write(path, data)
        self.prune(keep=path)
        return len(data)

    def ids(self) -> list[str]:
        """Stored incident ids, oldest first (ids begin with the trigger time)."""
        if not self.directory.is_dir():
            return []
        return sorted(p.name[:-len(SUFFIX)] for p in self.directory.glob(f"*{SUFFIX}")
                      if ID_PATTERN.match(p.name[:-len(SUFFIX)]))

    def load(self, incident_id: str) -> dict[str, Any]:
        return parse_record(self.read(incident_id), f"incident {incident_id}")

    def read(self, incident_id: str) -> bytes:
        """The record file's bytes (as stored and sent over the uplink)."""
        try:
            return self.path_of(incident_id).read_bytes()
        except FileNotFoundError:
            raise IncidentError(f"no incident {incident_id} in {self.directory}") from None
        except OSError as exc:
            raise IncidentError(f"incident {incident_id} cannot be read: {exc}") from exc

    def prune(self, keep: Path | None = None) -> list[str]:
        """Delete the oldest records past `max_incidents` or `max_bytes` (never `keep`)."""
        files = [self.directory / f"{i}{SUFFIX}" for i in self.ids()]
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
