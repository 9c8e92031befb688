"""Incident records over the gateway's control socket (`{"op": "incident", ...}`), for
`roomwarden incident --socket`: members of the roomwarden group read them without access to
the state directory.

The gateway never parses a whole record for them (one can be 256 MiB of JSON: seconds of the
interpreter and hundreds of MiB beside the alarms): `list` reads each record's head
(gateway.recorder.reading.head_of), in a thread; `get` sends the stored file as it is,
`PART_BYTES` at a time (`{"part": "<base64>"}` lines), then an open incident's progress file
as it is (`{"progress": "<base64>"}` lines, at most `READ_BYTES`; opened before the record, as
every reader does: gateway.recorder.reading), then `{"ok": true, "bytes": …, "sha256": …}`
(and `progress_bytes`, `progress_sha256`); the client checks and parses them
(`received_record`), and reads an open incident through its progress file there."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO

from gateway.contract.records import MAX_INCIDENT_BYTES
from gateway.recorder.heads import summary
from gateway.recorder.progress import READ_BYTES
from gateway.recorder.reading import from_parts, head_of
from gateway.recorder.store import IncidentError, IncidentStore, misshapen, parse_record

PART_BYTES = 1 << 20
"""Bytes of a record's file in one answer line (base64: 1.4 MB a line)."""
Send = Callable[[dict[str, Any]], Awaitable[None]]


def answer_now(store: IncidentStore, request: dict[str, Any]) -> dict[str, Any]:
    """`action` `list`: every record's summary, oldest first, from its head."""
    if request.get("action") != "list":
        return {"ok": False, "error": "incident requests: action list, or get with an id"}
    rows = []
    for incident_id in store.ids():
        try:
            rows.append(summary(head_of(store, incident_id)))
        except IncidentError as exc:
            rows.append({"id": incident_id, "status": "unreadable", "error": str(exc)})
    return {"ok": True, "incidents": rows}


async def answer(store: IncidentStore, request: dict[str, Any], send: Send) -> dict[str, Any]:
    """`list` (in a thread), or `get` with `id`: the record's file in parts (see the module
    docstring)."""
    incident_id = request.get("id")
    if request.get("action") != "get" or not isinstance(incident_id, str):
        return await asyncio.to_thread(answer_now, store, request)
    with contextlib.ExitStack() as files:
        try:
            progress = await asyncio.to_thread(_open_progress, store, incident_id)
            if progress is not None:
                files.enter_context(progress)
            handle = files.enter_context(
                await asyncio.to_thread(open, store.path_of(incident_id), "rb"))
        except IncidentError as exc:
            return {"ok": False, "error": str(exc)}
        except FileNotFoundError:
            return {"ok": False, "error": f"no incident {incident_id} in {store.directory}"}
        except OSError as exc:
            return {"ok": False, "error": f"incident {incident_id} cannot be read: {exc}"}
        final: dict[str, Any] = {"ok": True}
        for prefix, source, limit, what in (
                ("", handle, MAX_INCIDENT_BYTES, f"incident {incident_id} is"),
                ("progress_", progress, READ_BYTES, f"the progress file of open incident "
                                                    f"{incident_id} (read when it closes) is")):
            if source is None:
                continue
            digest, size = hashlib.sha256(), 0
            while part := await asyncio.to_thread(source.read, PART_BYTES):
                size += len(part)
                if size > limit:
                    return {"ok": False, "error": f"{what} larger than {limit} bytes"}
                digest.update(part)
                await send({"progress" if prefix else "part":
                            base64.b64encode(part).decode("ascii")})
            final.update({f"{prefix}bytes": size, f"{prefix}sha256": digest.hexdigest()})
        return final


def _open_progress(store: IncidentStore, incident_id: str) -> BinaryIO | None:
    try:
        return open(store.progress_path_of(incident_id), "rb")
    except FileNotFoundError:
        return None


def received_record(incident_id: str, answers: list[dict[str, Any]]) -> dict[str, Any]:
    """The record `answer` sent in `answers` (its part lines, then the final one), checked
    (size, SHA-256, the record's shape); an open incident's as of its last save if its progress
    file came too (gateway.recorder.reading.from_parts). IncidentError saying why not."""
    final, data, progress = answers[-1], bytearray(), bytearray()
    what = f"incident {incident_id}"
    try:
        for line in answers[:-1]:
            for key, into in (("part", data), ("progress", progress)):
                part = line.get(key)
                if isinstance(part, str):
                    into += base64.b64decode(part, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise IncidentError(f"{what}: the gateway sent a bad part: {exc}") from None
    sent_progress = "progress_bytes" in final
    progress_sum = hashlib.sha256(progress).hexdigest() if sent_progress else None
    if (final.get("bytes"), final.get("sha256")) != (len(data), hashlib.sha256(data).hexdigest())\
            or (final.get("progress_bytes", 0), final.get("progress_sha256")) != (
                len(progress), progress_sum):
        raise IncidentError(f"{what}: what arrived is not what the gateway sent "
                            f"({len(data)} bytes, {len(progress)} of progress)")
    record = parse_record(bytes(data), what)
    missing = misshapen(record)
    if missing is not None:
        raise IncidentError(f"{what} is not a whole record: {missing}")
    return from_parts(incident_id, record, bytes(progress) if sent_progress else None)
