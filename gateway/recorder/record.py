"""An incident's stored form (docs/incidents.md, *Record format*), as a dict (`record_of`) or
as the pieces of its JSON text (`record_pieces`, what the keeper's writer saves): the same text
`json.dumps(record_of(...))` gives, made a few thousand samples at a time so that a save holds
neither the record's samples as Python objects nor its whole text; and the start-up's marking
of records a dead process left `open` (`mark_interrupted`), which reads no record whole."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from gateway.recorder.ring import PointRing, Recorded
from gateway.recorder.store import FORMAT, IncidentError, IncidentStore, dump

if TYPE_CHECKING:
    from gateway.recorder.incidents import OpenIncident

log = logging.getLogger("roomwarden.incidents")

QUALITY_CHAR = {"good": "g", "stale": "s", "comm_error": "c", "invalid": "i"}
WINDOWS = 128
"""A ring is read back in at most about this many windows of chunks…"""
MIN_WINDOW = 64
"""…of at least this many chunks (8,192 samples) each."""
_MS = 1_000_000


def head_of(incident: OpenIncident, status: str, health_now: dict[str, Any]) -> dict[str, Any]:
    """The record but its `points` and `drill` (in the record's key order)."""
    trigger = incident.trigger
    return {
        "format": FORMAT, "id": incident.id, "status": status,
        "kind": "alarm" if incident.drill is None else "drill",  # issue 12: live drills
        "room": incident.room, **incident.identity,
        "trigger": trigger.as_dict(),
        "from_ns": incident.start_ns, "until_ns": incident.end_ns,
        "event_count": len(incident.events),  # (for a list, before the large keys)
        "rules": incident.context.rules,
        "outputs_served": incident.context.outputs,
        "events": incident.events, "output_changes": incident.outputs,
        "health": {"at_trigger": incident.health_at_trigger, "at_save": health_now},
        **({} if not incident.dropped else {"dropped": incident.dropped}),
        **({} if incident.cut_ns is None else {"cut": {
            "at_ns": incident.cut_ns, "samples": incident.samples,
            "max_samples": incident.max_samples}}),
        **({"clock_steps": incident.clock_steps} if incident.clock_steps else {}),
    }


def record_of(incident: OpenIncident, status: str, health_now: dict[str, Any]) -> dict[str, Any]:
    """The stored form of an incident (docs/incidents.md)."""
    points = {}
    for point, meta in sorted(incident.context.points.items()):
        ring = incident.rings.get(point)
        points[point] = {**meta, **_columns(ring.samples() if ring is not None else [])}
    return {**head_of(incident, status, health_now), "points": points,
            **({} if incident.drill is None else {"drill": incident.drill})}


def record_pieces(incident: OpenIncident, status: str,
                  health_now: dict[str, Any]) -> Iterator[str]:
    """`dump(record_of(incident, status, health_now))` in pieces (see the module docstring)."""
    yield dump(head_of(incident, status, health_now))[:-1] + ',"points":{'
    for n, (point, meta) in enumerate(sorted(incident.context.points.items())):
        yield ("," if n else "") + dump(point) + ":" + dump(meta)[:-1] + ("," if meta else "")
        yield from _column_pieces(incident.rings.get(point))
        yield "}"
    yield "}"
    if incident.drill is not None:
        yield ',"drill":' + dump(incident.drill)
    yield "}"


def _columns(samples: list[Recorded]) -> dict[str, Any]:
    return {"ts": [s.ts // _MS for s in samples], "v": [s.value for s in samples],
            "q": "".join(QUALITY_CHAR[s.quality.value] for s in samples)}


def _column_pieces(ring: PointRing | None) -> Iterator[str]:
    """`"ts":[…],"v":[…],"q":"…"` of the ring: two passes over it, a window at a time (the
    qualities, a character a sample, are kept from the first)."""
    qualities = []
    comma = ""
    yield '"ts":['
    for window in _windows(ring):
        yield comma + ",".join([str(s.ts // _MS) for s in window])
        qualities.append("".join([QUALITY_CHAR[s.quality.value] for s in window]))
        comma = ","
    yield '],"v":['
    comma = ""
    for window in _windows(ring):
        yield comma + dump([s.value for s in window])[1:-1]
        comma = ","
    yield '],"q":"' + "".join(qualities) + '"'


def _windows(ring: PointRing | None) -> Iterator[list[Recorded]]:
    """The ring's samples, oldest first, in windows of whole chunks (nonempty lists). An
    incident's rings hold their samples in time order (the keeper copies them so): a window
    from just after the last chunk of the one before to the last of its own holds each sample
    once."""
    if ring is None:
        return
    lasts = ring.chunk_index()[2::3]
    step = max(MIN_WINDOW, -(-len(lasts) // WINDOWS))
    lo = 0
    for k in range(step - 1, len(lasts), step):
        window = ring.samples(lo * _MS, lasts[k] * _MS)
        lo = lasts[k] + 1
        if window:
            yield window
    window = ring.samples(lo * _MS)
    if window:
        yield window


def mark_interrupted(store: IncidentStore) -> list[str]:
    """Records left `open` by a process that died: `interrupted` (they hold what was saved).
    Each status is read from its file's first bytes and rewritten in place (a record whose
    text does not begin as the keeper writes it, one written by hand, is read whole)."""
    marked = []
    for incident_id in store.ids():
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
        marked.append(incident_id)
        log.warning("event=incident_interrupted id=%s reason=%r", incident_id,
                    "left open by a gateway that stopped without closing it")
    return marked
