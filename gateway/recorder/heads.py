"""An incident record's head: what a list shows (id, status, kind, room, the trigger, the window,
the number of events), read from at most `HEAD_TEXT` characters of its file's text, never the
record whole.

A record can hold millions of samples (up to 256 MiB of JSON): parsing one holds the
interpreter for seconds and takes hundreds of MiB, and `incident list` over the control socket
and the panel's incident list run inside the gateway, beside its alarms. The keeper writes the
keys a list needs first (`format`, `id`, `status`, `kind`, `room`, `gateway`, `site`,
`config`, `trigger`, `from_ns`, `until_ns`, `event_count`: gateway.recorder.record.head_of),
so the head is read key by key until the first large one (`BODY_KEYS`). A record whose head
is not there (written by hand, a trigger note past the bound) is read whole only if its file
is small (`WHOLE_FILE_BYTES`), else listed as unreadable."""

from __future__ import annotations

import codecs
import json
import os
import zlib
from typing import Any

from gateway.recorder.store import IncidentError, IncidentStore, misshapen

HEAD_TEXT = 64 * 1024
"""Characters of a record's text read for its summary (its head is a few hundred)."""
WHOLE_FILE_BYTES = 1 << 20
"""A record whose head cannot be read is read whole if its file is at most this large."""


BODY_KEYS = frozenset({"rules", "outputs_served", "events", "output_changes", "health",
                       "points", "drill"})
"""The record's keys that may be large: reading a head stops before the first of them."""


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """A list's row of a record (or of its head); `as_of_ns`: an open incident's last save
    read (gateway.recorder.reading), else None."""
    trigger = record["trigger"]
    return {"id": record["id"], "status": record["status"], "room": record["room"],
            "severity": trigger.get("severity"), "rule": trigger.get("rule"),
            "subject": trigger.get("subject"), "ts": trigger.get("ts"),
            "as_of_ns": record.get("as_of_ns")}


def panel_row(record: dict[str, Any]) -> dict[str, Any]:
    """The panel's row of a record (or of its head: `events` from its `event_count`, None in
    a record written before 6 Dec 2026 that has none)."""
    events = record.get("events")
    return {**summary(record), "title": record["trigger"].get("title"),
            "kind": record.get("kind", "alarm"), "from_ns": record.get("from_ns"),
            "until_ns": record.get("until_ns"),
            "events": len(events) if isinstance(events, list) else record.get("event_count")}


def head_of(store: IncidentStore, incident_id: str, want: str = "trigger") -> dict[str, Any]:
    """The keys of a stored record before its large ones (see the module docstring), or the
    whole record if its head cannot be read or lacks `want` (e.g. `event_count`, which records
    written before 6 Dec 2026 lack) and its file is small; IncidentError if it cannot be
    read."""
    path = store.path_of(incident_id)
    what = f"incident {incident_id}"
    try:
        with open(path, "rb") as handle:
            head = head_of_text(_text_head(handle.read, what))
            size = os.fstat(handle.fileno()).st_size
    except FileNotFoundError:
        raise IncidentError(f"no incident {incident_id} in {store.directory}") from None
    except OSError as exc:
        raise IncidentError(f"{what} cannot be read: {exc}") from exc
    if head is None or misshapen({"from_ns": 0, "until_ns": 0, "points": {}, "events": [],
                                  **head}) is not None:
        if size > WHOLE_FILE_BYTES:
            raise IncidentError(f"{what}: its first {HEAD_TEXT} characters do not hold the "
                                "head a keeper writes (id, status, room, trigger)")
        return store.load(incident_id)
    if want not in head and size <= WHOLE_FILE_BYTES:
        return store.load(incident_id)
    if head["id"] != incident_id:
        raise IncidentError(f"{what} holds the record of {str(head['id'])[:120]!r}")
    return head


def _text_head(read: Any, what: str) -> str:
    """Up to `HEAD_TEXT` characters from the start of a gzip file (`read`: its handle's)."""
    inflate = zlib.decompressobj(wbits=31)
    decoder = codecs.getincrementaldecoder("utf-8")()
    text = ""
    try:
        while len(text) < HEAD_TEXT and not inflate.eof:
            data = inflate.unconsumed_tail or read(16 * 1024)
            if not data:
                break
            text += decoder.decode(inflate.decompress(data, HEAD_TEXT - len(text)))
    except (zlib.error, UnicodeDecodeError) as exc:
        raise IncidentError(f"{what} cannot be read: {exc}") from None
    return text


def _skip(text: str, at: int) -> int:
    """Past the JSON whitespace at `at`."""
    while at < len(text) and text[at] in " \t\n\r":
        at += 1
    return at


def head_of_text(text: str) -> dict[str, Any] | None:
    """The record's keys before the first of `BODY_KEYS` (or all there are), parsed from the
    start of its text; None unless they include `trigger` (not an object, cut off before it,
    another order)."""
    decoder = json.JSONDecoder()
    head: dict[str, Any] = {}
    at = _skip(text, 0)
    if not text.startswith("{", at):
        return None
    at += 1
    try:
        while True:
            key, at = decoder.raw_decode(text, _skip(text, at))
            at = _skip(text, at)
            if not isinstance(key, str) or key in BODY_KEYS or not text.startswith(":", at):
                break
            value, at = decoder.raw_decode(text, _skip(text, at + 1))
            at = _skip(text, at)
            if not text.startswith((",", "}"), at):  # (a number cut short parses: -10 as -1)
                break
            head[key] = value
            if text[at] == "}":
                break
            at += 1
    except (ValueError, RecursionError):  # cut off inside a value, or not JSON
        pass
    return head if isinstance(head.get("trigger"), dict) else None
