"""Incident records over the gateway's control socket (`{"op": "incident", ...}`), for
`roomwarden incident --socket`: members of the roomwarden group read them without access to
the state directory.

The gateway never parses a whole record for them (one can be 256 MiB of JSON: seconds of the
interpreter and hundreds of MiB beside the alarms): `list` reads each record's head
(gateway.recorder.heads), in a thread; `get` sends the stored file as it is, `PART_BYTES` at a
time (`{"part": "<base64>"}` lines, then `{"ok": true, "bytes": …, "sha256": …}`), and the
client checks and parses it (`received_record`)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.contract.incidents import MAX_INCIDENT_BYTES
from gateway.recorder.heads import head_of, summary
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
    try:
        handle = await asyncio.to_thread(open, store.path_of(incident_id), "rb")
    except IncidentError as exc:
        return {"ok": False, "error": str(exc)}
    except FileNotFoundError:
        return {"ok": False, "error": f"no incident {incident_id} in {store.directory}"}
    except OSError as exc:
        return {"ok": False, "error": f"incident {incident_id} cannot be read: {exc}"}
    digest, size = hashlib.sha256(), 0
    with handle:
        while part := await asyncio.to_thread(handle.read, PART_BYTES):
            size += len(part)
            if size > MAX_INCIDENT_BYTES:
                return {"ok": False, "error": f"incident {incident_id} is larger than "
                                              f"{MAX_INCIDENT_BYTES} bytes"}
            digest.update(part)
            await send({"part": base64.b64encode(part).decode("ascii")})
    return {"ok": True, "bytes": size, "sha256": digest.hexdigest()}


def received_record(incident_id: str, answers: list[dict[str, Any]]) -> dict[str, Any]:
    """The record `answer` sent in `answers` (its part lines, then the final one), checked
    (size, SHA-256, the record's shape); IncidentError saying why not."""
    final, data = answers[-1], bytearray()
    what = f"incident {incident_id}"
    try:
        for line in answers[:-1]:
            part = line.get("part")
            if isinstance(part, str):
                data += base64.b64decode(part, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise IncidentError(f"{what}: the gateway sent a bad part: {exc}") from None
    if final.get("bytes") != len(data) or \
            final.get("sha256") != hashlib.sha256(data).hexdigest():
        raise IncidentError(f"{what}: what arrived is not what the gateway sent "
                            f"({len(data)} bytes)")
    record = parse_record(bytes(data), what)
    missing = misshapen(record)
    if missing is not None:
        raise IncidentError(f"{what} is not a whole record: {missing}")
    return record
