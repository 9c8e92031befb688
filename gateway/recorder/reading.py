"""What a user reads of a stored incident — `roomwarden incident` (gateway.recorder.cli), the
panel's Incidents view (gateway.panel.events, gateway.recorder.report_apart), the control
socket (gateway.recorder.remote) — through one door. A record that is not open is read as
stored. An open incident's record holds what it held when it opened (it is written whole only
then and when it closes); what it gained since is in its progress file
(gateway.recorder.progress). So an open incident is read through that file, with the
start-up's own reading (`progress.replay`): the record as it opened and every whole save since,
at most one save interval (`SAVE_EVERY`, 60 s) old. What is returned of it says so: status
`open` and `as_of_ns`, the wall time of the last save read.

A reader is not the keeper: it writes, renames and deletes nothing, and reads while the
keeper's writer thread appends to the progress file, replaces it whole (a clock step, a failed
append) or closes the incident (the record written whole, then the progress file deleted):

- the progress file is opened first, and that one file (the handle) is read to its end; a save
  being appended is cut short there and left out;
- then the record's status is read: a record that is not `open` any more (it closed meanwhile,
  or a crash left the progress file beside a closed record) is read as stored;
- no progress file (none any more: the incident just closed): the record as stored.

Bounds: a reader reads at most `progress.READ_BYTES` (64 MiB) of a progress file and
`progress.READ_TEXT` (256 MiB) of its text; past them it says the incident is read when it
closes (IncidentError). Lists read the heads only (`head_of`: the samples members are
decompressed, not parsed)."""

from __future__ import annotations

import io
from typing import Any, BinaryIO

from gateway.recorder import heads
from gateway.recorder.progress import Replayed, replay
from gateway.recorder.record import points_of
from gateway.recorder.store import IncidentError, IncidentStore, misshapen

AS_OF = "as_of_ns"
"""In what a reader returns of an open incident: the wall time (ns) of the save it shows."""
Stamp = tuple[tuple[int, int], tuple[int, int] | None]
"""(size, mtime ns) of a record's file and of its progress file (None: none)."""


def load(store: IncidentStore, incident_id: str) -> dict[str, Any]:
    """The record; an open incident's up to its last whole save (`as_of_ns`). IncidentError if
    it cannot be read."""
    got = _replayed(store, incident_id, samples=True)
    return store.load(incident_id) if got is None else opened(got, incident_id)


def head_of(store: IncidentStore, incident_id: str, want: str = "trigger") -> dict[str, Any]:
    """What a list reads of a record (gateway.recorder.heads.head_of); an open incident's as
    of its last whole save (`as_of_ns`, `event_count`, `until_ns`, …)."""
    got = _replayed(store, incident_id, samples=False)
    if got is None:
        return heads.head_of(store, incident_id, want)
    record = opened(got, incident_id)
    return {k: v for k, v in record.items() if k not in heads.BODY_KEYS}


def from_parts(incident_id: str, record: dict[str, Any],
               progress: bytes | None) -> dict[str, Any]:
    """A record and its progress file as the control socket sent them (gateway.recorder.remote:
    the progress file opened before the record): the record, or if it is open and the file
    holds a whole save, the incident as of its last save."""
    if progress is None or record.get("status") != "open":
        return record
    got = replay(io.BytesIO(progress), f"open incident {incident_id}", bounded=True)
    return record if got is None else opened(got, incident_id)


def opened(got: Replayed, incident_id: str) -> dict[str, Any]:
    """The record of an open incident as its progress file holds it, with `as_of_ns`."""
    record = {**got.head, "points": points_of(got.points, got.rings)}
    if got.saved_ns is not None:
        record[AS_OF] = got.saved_ns
    missing = misshapen(record)
    if missing is not None or record["id"] != incident_id:
        raise IncidentError(f"the progress of open incident {incident_id} is not a whole "
                            f"record: {missing or 'another id'}")
    return record


def stamp(store: IncidentStore, incident_id: str) -> Stamp:
    """What changes when what a reader reads of the incident does (OSError: no record)."""
    info = store.path_of(incident_id).stat()
    try:
        more = store.progress_path_of(incident_id).stat()
    except FileNotFoundError:
        return (info.st_size, info.st_mtime_ns), None
    return (info.st_size, info.st_mtime_ns), (more.st_size, more.st_mtime_ns)


def size_of(store: IncidentStore, incident_id: str) -> int:
    """Bytes a reader reads of the incident: its record's and its progress file's (OSError:
    no record)."""
    record, progress = stamp(store, incident_id)
    return record[0] + (0 if progress is None else progress[0])


def _replayed(store: IncidentStore, incident_id: str, samples: bool) -> Replayed | None:
    """The open incident from its progress file; None if it has none, is not open any more or
    the file holds no whole save (then the record as stored is what there is)."""
    handle = _progress(store, incident_id)
    if handle is None:
        return None
    with handle:
        if not _is_open(store, incident_id):
            return None
        return replay(handle, f"open incident {incident_id}", samples=samples, bounded=True)


def _progress(store: IncidentStore, incident_id: str) -> BinaryIO | None:
    try:
        return open(store.progress_path_of(incident_id), "rb")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IncidentError(f"progress of incident {incident_id} cannot be read: {exc}"
                            ) from exc


def _is_open(store: IncidentStore, incident_id: str) -> bool:
    """The record is `open` (or not written yet: at the opening the progress file is written
    first)."""
    if not store.path_of(incident_id).exists():
        return True
    status = store.status_of(incident_id)
    if status is None:  # (not a keeper's head: read whole, as a list would)
        status = store.load(incident_id).get("status")
    return status == "open"
