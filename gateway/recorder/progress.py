"""An open incident's progress file: the incident's record is written whole when it opens and
when it closes; in between each save (`SAVE_EVERY`, gateway.recorder.incidents) appends to
`<id>.progress.gz` only what the incident gained since the save before — each point's samples
after the last one the file holds, the new events and output changes, its end, the gateway's
health — so that an open incident's writes scale with what it gains, not with what it holds
(the wear audit, W3: the record rewritten whole every minute wrote about 35 times its closed
size over an hour, ~1.3 GB a day for a room whose alarm chattered).

The file is a series of gzip members of one JSON object each (`zcat` reads it as JSON lines):

- `{"head": …, "points": …}`: the record as `head_of` gives it (the events and output changes
  so far included) and the points' metadata (`RoomContext.points`);
- `{"samples": {point: {"ts": [ms…], "v": […], "q": "…"}}}`: samples after those of the point
  before them in the file (at most `ENTRY_SAMPLES` a member);
- `{"update": {…}}`: the end of a save — what it changed of the head (`until_ns`, `at_save`,
  `dropped`, `cut`), the events and output changes it adds, and its wall time (`saved_ns`:
  what a reader shows the open incident as of).

A save is its samples members and its update, written with one `write` and fsynced. The file is
written whole (temporary file, fsync, rename) before the record when the incident opens, and
again after a clock step (everything in it moves) or an append that failed. So a crash loses
what came after the last save (at most `SAVE_EVERY`), as when the record was rewritten each
minute: the next start rebuilds the record from the file (`rebuild`: its saves up to the last
whole one — a save a power loss cut short is left out — as `interrupted`) and deletes the file.
When the incident closes (or a stop interrupts it) its record is written whole, then the file
is deleted; one a crash left beside a closed record is deleted at the next start.

`replay` is the reading: it writes nothing, so the same code serves the start-up's `rebuild`
and every reader of an open incident (gateway.recorder.reading: the CLI, the panel, the
control socket), which read the file while the keeper's writer may be appending to it.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Iterator
from itertools import chain
from typing import TYPE_CHECKING, Any, BinaryIO

from gateway.contract.records import MAX_INCIDENT_BYTES, MAX_RECORD_BYTES
from gateway.field.sample import Quality
from gateway.recorder.record import QUALITY_CHAR, head_of, pieces_of, windows
from gateway.recorder.ring import PointRing
from gateway.recorder.store import PIECE, IncidentError, IncidentStore, dump
from gateway.records import dataclass
from gateway.storage import atomic_write, open_private, private_dir, write_fsync_close

if TYPE_CHECKING:
    from gateway.recorder.incident_state import OpenIncident

log = logging.getLogger("roomwarden.incidents")

ENTRY_SAMPLES = 65_536
"""Samples a `samples` member holds at most (what a rebuild decodes at a time)."""
Since = tuple[dict[str, int], int, int]
"""What the progress file holds already: per point the time (ns) of its last sample in it, the
number of events and of output changes."""
_MS = 1_000_000
_QUALITY = {char: Quality(name) for name, char in QUALITY_CHAR.items()}
_TAIL = ("dropped", "cut", "clock_steps")
"""The head's optional keys, last in `head_of`'s order."""
READ_BYTES = MAX_INCIDENT_BYTES
"""A reader of an open incident (not the start-up's `rebuild`) reads at most this much of its
progress file (64 MiB; the keeper's file holds what its record will — at most
`MAX_INCIDENT_SAMPLES` samples, ≤ 40 MB compressed — and one `update` a save)…"""
READ_TEXT = MAX_RECORD_BYTES
"""…and at most this much text decompressed from it (256 MiB, a record's bound)."""


@dataclass
class Replayed:
    """An incident as its progress file holds it (`replay`)."""

    head: dict[str, Any]
    """The record's keys but `points` (`head_of`'s, in its order; status `open`)."""
    points: dict[str, dict[str, Any]]
    """Point id → its metadata (`RoomContext.points`)."""
    rings: dict[str, PointRing]
    """Point id → its samples (empty if `replay` was told to skip them)."""
    saves: int
    """Whole saves read."""
    saved_ns: int | None
    """Wall time (ns) of the last of them (None in a file that does not say)."""


def start(store: IncidentStore, incident: OpenIncident, health: dict[str, Any]) -> int:
    """Replace the incident's progress file with all it holds now; returns its size."""
    private_dir(store.directory)
    head = head_of(incident, "open", health)
    size = 0

    def counted() -> Iterator[bytes]:
        nonlocal size
        for blob in chain([_member({"head": head, "points": incident.context.points})],
                          _sample_members(incident, None),
                          [_member({"update": _update(head, [], [], incident.saved_ns)})]):
            size += len(blob)
            yield blob

    atomic_write(store.progress_path_of(incident.id), counted())
    return size


def append(store: IncidentStore, incident: OpenIncident, since: Since,
           health: dict[str, Any]) -> int:
    """Append to the progress file what the incident gained since `since` (one write, fsynced;
    OSError if the file is missing or the write fails); returns the bytes written."""
    head = head_of(incident, "open", health)
    points, events, outputs = since
    data = b"".join([*_sample_members(incident, points),
                     _member({"update": _update(head, incident.events[events:],
                                                incident.outputs[outputs:],
                                                incident.saved_ns)})])
    write_fsync_close(open_private(store.progress_path_of(incident.id),
                                  os.O_WRONLY | os.O_APPEND), data)
    return len(data)


def drop(store: IncidentStore, incident_id: str) -> None:
    """Delete the incident's progress file (its record was written whole)."""
    store.progress_path_of(incident_id).unlink(missing_ok=True)


def replay(handle: BinaryIO, what: str, *, samples: bool = True,
           bounded: bool = False) -> Replayed | None:
    """What the progress file open on `handle` holds: the head member and every save up to the
    last whole one (a save cut short — a power loss, or one being appended while this reads —
    is left out). Reads only: two passes over this one handle (the file it was opened on, even
    if the keeper replaces or deletes it meanwhile). `samples=False` skips the samples members
    without parsing them (a list's head); `bounded`: at most `READ_BYTES` of the file and
    `READ_TEXT` of text (a reader's; the start-up reads the keeper's own file whole). None if
    it holds no whole save; IncidentError (`what`) if it cannot be read or is past a bound."""
    limits = (READ_BYTES, READ_TEXT) if bounded else (None, None)
    try:
        kinds = [text[:10] for text in _texts(handle, *limits)]
        last = max((n for n, k in enumerate(kinds) if k.startswith('{"update"')), default=-1)
        if last < 1 or not kinds[0].startswith('{"head"'):
            return None
        head: dict[str, Any] = {}
        points: dict[str, dict[str, Any]] = {}
        rings: dict[str, PointRing] = {}
        saved_ns = None
        handle.seek(0)
        for n, text in enumerate(_texts(handle, *limits)):
            if n > last:
                break
            if kinds[n].startswith('{"samples"'):
                if samples:
                    _add_samples(rings, _shaped(json.loads(text), "samples", dict, n))
                continue
            entry = json.loads(text)
            if n == 0:
                head = _shaped(entry, "head", dict, n)
                points = _shaped(entry, "points", dict, n)
            else:
                update = _shaped(entry, "update", dict, n)
                _apply(head, update)
                saved_ns = update.get("saved_ns")
    except _TooLarge as exc:
        raise IncidentError(f"{what}: {exc}; it is read whole when it closes") from None
    except _Damaged as exc:
        raise IncidentError(f"{what} is damaged: {exc}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IncidentError(f"{what} cannot be read: {exc!r}") from exc
    head = {**{k: v for k, v in head.items() if k not in _TAIL},
            **{k: head[k] for k in _TAIL if k in head}}
    return Replayed(head, points, rings, sum(k.startswith('{"update"') for k in kinds[:last + 1]),
                    saved_ns)


def rebuild(store: IncidentStore, incident_id: str) -> bool:
    """Write the record of an incident a dead process left open from its progress file
    (`replay`), as `interrupted` (the file is left for the caller). False if the file holds no
    whole save; IncidentError if it cannot be read."""
    what = f"progress of incident {incident_id}"
    try:
        with open(store.progress_path_of(incident_id), "rb") as handle:
            got = replay(handle, what)
    except OSError as exc:
        raise IncidentError(f"{what} cannot be read: {exc!r}") from exc
    if got is None:
        return False
    got.head["status"] = "interrupted"
    store.write(incident_id, pieces_of(got.head, got.points, got.rings, None))
    return True


def mark_interrupted(store: IncidentStore) -> list[str]:
    """Records left `open` by a process that died: `interrupted`, with what was saved. One
    with a progress file is rebuilt from it (`rebuild`); one without has its status read from
    its file's first bytes and rewritten in place (a record whose text does not begin as the
    keeper writes it, one written by hand, is read whole). Progress files beside a record that
    is not open any more (a crash between its close and the file's deletion) are deleted."""
    marked = []
    for incident_id in store.progress_ids():
        try:
            status = (store.status_of(incident_id) if store.path_of(incident_id).exists()
                      else "open")
            if status == "open" and rebuild(store, incident_id):
                marked.append(incident_id)
                log.warning("event=incident_interrupted id=%s from=progress reason=%r",
                            incident_id, "left open by a gateway that stopped without closing it")
            elif status == "open":
                log.error("event=incident_progress_unusable id=%s reason=%r", incident_id,
                          "no whole save in it: the record keeps what it had when it opened")
        except (IncidentError, OSError) as exc:
            log.error("event=incident_unreadable id=%s error=%s", incident_id, exc)
            continue
        except Exception as exc:  # damaged past what `replay` checks: this incident only
            log.error("event=incident_unreadable id=%s error=%r", incident_id, exc)
            continue
        drop(store, incident_id)
    for incident_id in store.ids():
        if incident_id in marked:
            continue
        try:
            status = store.status_of(incident_id)
            if status is None:
                record = store.load(incident_id)
                if record.get("status") != "open":
                    continue
                record["status"] = "interrupted"
                store.save(record)
            elif status != "open" or not store.set_status(incident_id, "interrupted"):
                continue
        except (IncidentError, OSError) as exc:
            log.error("event=incident_unreadable id=%s error=%s", incident_id, exc)
            continue
        except Exception as exc:  # a bug reading one record stops none of the others
            log.error("event=incident_unreadable id=%s error=%r", incident_id, exc)
            continue
        marked.append(incident_id)
        log.warning("event=incident_interrupted id=%s reason=%r", incident_id,
                    "left open by a gateway that stopped without closing it")
    return marked


def _member(entry: dict[str, Any]) -> bytes:
    deflate = zlib.compressobj(6, zlib.DEFLATED, 31)
    return deflate.compress(dump(entry).encode()) + deflate.flush()


def _update(head: dict[str, Any], events: list[dict[str, Any]],
            outputs: list[dict[str, Any]], saved_ns: int) -> dict[str, Any]:
    return {"until_ns": head["until_ns"], "at_save": head["health"]["at_save"],
            "dropped": head.get("dropped"), "cut": head.get("cut"),
            "events": events, "output_changes": outputs, "saved_ns": saved_ns}


def _sample_members(incident: OpenIncident, since: dict[str, int] | None) -> Iterator[bytes]:
    """`samples` members of each point's samples after `since` (all of them if None), a window
    of chunks of a ring at a time."""
    batch: dict[str, dict[str, Any]] = {}
    count = 0
    for point in sorted(incident.rings):
        after = None if since is None else since.get(point)
        lo = 0 if after is None else after // _MS + 1
        for window in windows(incident.rings[point], lo):
            for at in range(0, len(window), ENTRY_SAMPLES):
                part = window[at:at + ENTRY_SAMPLES]
                columns = batch.setdefault(point, {"ts": [], "v": [], "q": ""})
                columns["ts"] += [s.ts // _MS for s in part]
                columns["v"] += [s.value for s in part]
                columns["q"] += "".join([QUALITY_CHAR[s.quality.value] for s in part])
                count += len(part)
                if count >= ENTRY_SAMPLES:
                    yield _member({"samples": batch})
                    batch, count = {}, 0
    if batch:
        yield _member({"samples": batch})


class _Damaged(Exception):
    """A member of a progress file that is not as the keeper writes it (`_shaped`)."""


def _shaped(entry: Any, key: str, kind: type, n: int) -> Any:
    """`entry[key]`, which must be a `kind`; `_Damaged` (naming the member) if it is not. A
    member that parses but has another shape (`{"samples": []}`) raised AttributeError, which
    stopped the start's recovery of every incident and `incident show` (the restart audit)."""
    value = entry.get(key) if isinstance(entry, dict) else None
    if not isinstance(value, kind):
        raise _Damaged(f"member {n + 1}: {key} missing or not a {kind.__name__}")
    return value


class _TooLarge(Exception):
    """A reader's bound passed (`_texts`)."""


def _texts(handle: BinaryIO, max_bytes: int | None = None,
           max_text: int | None = None) -> Iterator[str]:
    """The text of each whole gzip member of the file, in order; a member cut short or damaged
    (a power loss during a save, a save being appended) ends it. `_TooLarge` past `max_bytes`
    of the file or `max_text` of text (None: no bound)."""
    inflate = zlib.decompressobj(wbits=31)
    parts: list[bytes] = []
    data = b""
    read = size = 0
    while True:
        if not data:
            data = handle.read(PIECE)
            if not data:
                return
            read += len(data)
            if max_bytes is not None and read > max_bytes:
                raise _TooLarge(f"its progress file is over {max_bytes} bytes")
        try:
            parts.append(inflate.decompress(data, PIECE))
        except zlib.error:
            return
        size += len(parts[-1])
        if max_text is not None and size > max_text:
            raise _TooLarge(f"its progress file holds over {max_text} bytes of text")
        data = inflate.unconsumed_tail
        if inflate.eof:
            try:
                yield b"".join(parts).decode()
            except UnicodeDecodeError:
                return
            data, parts = inflate.unused_data, []
            inflate = zlib.decompressobj(wbits=31)


def _add_samples(rings: dict[str, PointRing], samples: dict[str, Any]) -> None:
    for point, columns in samples.items():
        if not (isinstance(columns, dict) and isinstance(columns.get("ts"), list)
                and isinstance(columns.get("v"), list) and isinstance(columns.get("q"), str)):
            raise _Damaged(f"samples of {point!r} are not ts and v lists and a q string")
        ring = rings.get(point)
        if ring is None:  # (as an incident's: no window, no cap but the file's)
            ring = rings[point] = PointRing(10.0**7, 10**9)
        ring.extend((ts * _MS, value, _QUALITY[q]) for ts, value, q
                    in zip(columns["ts"], columns["v"], columns["q"], strict=True))


def _apply(head: dict[str, Any], update: dict[str, Any]) -> None:
    for key, kind in (("events", list), ("output_changes", list)):
        if not isinstance(update.get(key), kind) or not isinstance(head.get(key), kind):
            raise _Damaged(f"{key} of an update or of the head missing or not a list")
    if not isinstance(head.get("health"), dict):
        raise _Damaged("health of the head missing or not an object")
    head["until_ns"] = update["until_ns"]
    head["events"] += update["events"]
    head["output_changes"] += update["output_changes"]
    head["event_count"] = len(head["events"])
    head["health"]["at_save"] = update["at_save"]
    for key in ("dropped", "cut"):
        if update.get(key):
            head[key] = update[key]
