"""An incident's stored form (docs/incidents.md, *Record format*), as a dict (`record_of`) or
as the pieces of its JSON text (`record_pieces`, what the keeper's writer saves): the same text
`json.dumps(record_of(...))` gives, made a few thousand samples at a time so that a save holds
neither the record's samples as Python objects nor its whole text."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from gateway.recorder.ring import PointRing, Recorded
from gateway.recorder.store import FORMAT, dump

if TYPE_CHECKING:
    from gateway.recorder.incidents import OpenIncident

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
    return {**head_of(incident, status, health_now),
            "points": points_of(incident.context.points, incident.rings),
            **({} if incident.drill is None else {"drill": incident.drill})}


def points_of(points: dict[str, dict[str, Any]],
              rings: dict[str, PointRing]) -> dict[str, dict[str, Any]]:
    """A record's `points`: per point (sorted) its metadata and the columns of its ring."""
    return {point: {**meta, **_columns(rings[point].samples() if point in rings else [])}
            for point, meta in sorted(points.items())}


def record_pieces(incident: OpenIncident, status: str,
                  health_now: dict[str, Any]) -> Iterator[str]:
    """`dump(record_of(incident, status, health_now))` in pieces (see the module docstring)."""
    return pieces_of(head_of(incident, status, health_now), incident.context.points,
                     incident.rings, incident.drill)


def pieces_of(head: dict[str, Any], points: dict[str, dict[str, Any]],
              rings: dict[str, PointRing], drill: dict[str, Any] | None) -> Iterator[str]:
    """The record's text in pieces: `head` (`head_of`), then per point (sorted) its `points`
    entry and the columns of its ring, then `drill`."""
    yield dump(head)[:-1] + ',"points":{'
    for n, (point, meta) in enumerate(sorted(points.items())):
        yield ("," if n else "") + dump(point) + ":" + dump(meta)[:-1] + ("," if meta else "")
        yield from _column_pieces(rings.get(point))
        yield "}"
    yield "}"
    if drill is not None:
        yield ',"drill":' + dump(drill)
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
    for window in windows(ring):
        yield comma + ",".join([str(s.ts // _MS) for s in window])
        qualities.append("".join([QUALITY_CHAR[s.quality.value] for s in window]))
        comma = ","
    yield '],"v":['
    comma = ""
    for window in windows(ring):
        yield comma + dump([s.value for s in window])[1:-1]
        comma = ","
    yield '],"q":"' + "".join(qualities) + '"'


def windows(ring: PointRing | None, since_ms: int = 0) -> Iterator[list[Recorded]]:
    """The ring's samples from `since_ms` on, oldest first, in windows of whole chunks
    (nonempty lists). An incident's rings hold their samples in time order (the keeper copies
    them so): a window from just after the last chunk of the one before to the last of its own
    holds each sample once."""
    if ring is None:
        return
    lasts = ring.chunk_index()[2::3]
    step = max(MIN_WINDOW, -(-len(lasts) // WINDOWS))
    lo = since_ms
    for k in range(step - 1, len(lasts), step):
        if lasts[k] < lo:
            continue
        window = ring.samples(lo * _MS, lasts[k] * _MS)
        lo = lasts[k] + 1
        if window:
            yield window
    window = ring.samples(lo * _MS)
    if window:
        yield window
