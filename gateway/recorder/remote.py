"""Incident records over the gateway's control socket (`{"op": "incident", ...}`), for
`roomwarden incident --socket`: members of the roomwarden group read them without access to
the state directory. Reading runs in a thread (a record is decompressed and parsed)."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.recorder.store import IncidentError, IncidentStore


def summary(record: dict[str, Any]) -> dict[str, Any]:
    trigger = record["trigger"]
    return {"id": record["id"], "status": record["status"], "room": record["room"],
            "severity": trigger.get("severity"), "rule": trigger.get("rule"),
            "subject": trigger.get("subject"), "ts": trigger.get("ts")}


def answer_now(store: IncidentStore, request: dict[str, Any]) -> dict[str, Any]:
    """`action`: `list` (summaries, oldest first) or `get` with `id` (the whole record)."""
    action = request.get("action")
    try:
        if action == "list":
            rows = []
            for incident_id in store.ids():
                try:
                    rows.append(summary(store.load(incident_id)))
                except IncidentError as exc:
                    rows.append({"id": incident_id, "status": "unreadable", "error": str(exc)})
            return {"ok": True, "incidents": rows}
        if action == "get" and isinstance(request.get("id"), str):
            return {"ok": True, "record": store.load(request["id"])}
    except IncidentError as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": False, "error": "incident requests: action list, or get with an id"}


async def answer(store: IncidentStore, request: dict[str, Any]) -> dict[str, Any]:
    return await asyncio.to_thread(answer_now, store, request)
