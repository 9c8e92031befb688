"""A live drill's evaluation: what was expected against what the journal and the outputs show.

* per expected alarm: when it was detected (its drill alarm became active, seconds after the
  drill's start) against the window the file allows, with the latency;
* per drill alarm: when it became active, when it was acknowledged and by whom, the time to
  acknowledge (an alarm nobody acknowledged is listed as missed);
* per expected output: an evacuation drill counts the output as switched when its coil was
  written and read back in that state (the output driver's confirmation); a silent drill holds
  every output, and counts it as met when a drill alarm asked for its role in the window
  (`held`: the output was not written);
* the output writes of the room's outputs during the drill, each with its read-back;
* the forbidden alarms that fired, and the real alarms that ended the drill;
* the wall-clock steps seen while it ran (`clock_steps`: seconds into the drill, by how many
  seconds): every time above is on the clock after them (gateway.drills.live_clock).

`missed` lists everything that was not as expected; `ok` is true when it is empty. Pure: the
caller hands in the journal events and the output writes (gateway.drills.live_control).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.alarms.events import DRILL_PREFIX, AlarmEvent, EventKind
from gateway.alarms.lifecycle import AlarmState
from gateway.config.site import Output
from gateway.drills.live import LiveDrill
from gateway.drills.runner import DrillReport, judge

_NS = 1_000_000_000
_ACTIVE = {AlarmState.ACTIVE_UNACKNOWLEDGED, AlarmState.ACTIVE_ACKNOWLEDGED}
_WAITING = {AlarmState.ACTIVE_UNACKNOWLEDGED, AlarmState.RETURNED_UNACKNOWLEDGED}


def evaluate(session: LiveDrill, events: list[AlarmEvent],
             writes: list[dict[str, Any]]) -> dict[str, Any]:
    """The evaluation (JSON-able) of a finished drill. `events`: the journal's events since the
    drill began; `writes`: the output writes (`output`, `ts`, `written`, `read_back`, `error`)
    the gateway made while it ran."""
    o = session.outcome
    start = o.start_ns
    end = o.end_ns if o.end_ns is not None else start

    def at(ns: int) -> float:
        return round((ns - start) / _NS, 3)

    mine = [session.on_new_clock(e) for e in events if e.drill and e.kind is EventKind.ALARM]
    alarms: dict[str, dict[str, Any]] = {}
    first_active: dict[tuple[str, str], float] = {}
    severities: dict[tuple[str, str], str] = {}
    for e in mine:
        name = f"{e.rule}@{e.subject}"
        real = (e.rule, e.subject.removeprefix(DRILL_PREFIX))
        entry = alarms.get(name)
        if e.state in _ACTIVE and e.previous_state not in _ACTIVE and entry is None:
            entry = alarms[name] = {"alarm": name, "severity": str(e.severity),
                                    "activated_s": at(e.ts), "acknowledged_s": None,
                                    "acknowledged_by": None, "time_to_acknowledge_s": None,
                                    "note": None}
            first_active.setdefault(real, at(e.ts))
            severities.setdefault(real, str(e.severity))
        elif entry is not None and entry["acknowledged_s"] is None \
                and e.previous_state in _WAITING and e.state not in _WAITING \
                and e.actor != "system" and not (e.note or "").startswith("drill ended"):
            entry.update(acknowledged_s=at(e.ts), acknowledged_by=e.actor, note=e.note,
                         time_to_acknowledge_s=round(at(e.ts) - entry["activated_s"], 3))

    outputs = session.core.outputs
    served = _served(session, outputs)
    confirmed = [w for w in writes if w["output"] in served and start <= w["ts"] <= end]
    changes: dict[str, list[tuple[float, bool]]] = {o_id: [] for o_id in outputs}
    if session.evacuation:
        for w in confirmed:
            if w.get("error") is None and w.get("read_back") == w["written"]:
                changes[w["output"]].append((at(w["ts"]), bool(w["written"])))
    else:
        for name, roles in o.held.items():
            activated = alarms.get(name, {}).get("activated_s")
            for o_id in served:
                if activated is not None and outputs[o_id].role in roles:
                    changes[o_id].append((activated, True))
    report = DrillReport(session.drill, Path(session.source or session.drill.drill))
    judge(session.drill, first_active, severities, changes, report, {})

    missed = [f"{c.what}: {'not detected' if c.observed is None else c.note or 'late'}"
              for c in report.checks if not c.ok]
    missed += [f"forbidden: {item}" for item in report.forbidden]
    missed += [f"{a['alarm']}: not acknowledged" for a in alarms.values()
               if a["acknowledged_s"] is None]
    return {
        "drill": session.drill.drill, "title": session.drill.title, "room": session.room,
        "mode": session.mode, "actor": session.actor, "source": session.source,
        "started_ns": start, "ended_ns": end, "end_reason": o.end_reason,
        "duration_s": at(end), "ended_by_real_alarm": o.real_hazard,
        "expected": [{"what": c.what, "window_s": list(c.window), "observed_s": c.observed,
                      "latency_s": None if c.latency is None else round(c.latency, 3),
                      "ok": c.ok, "note": c.note} for c in report.checks],
        "alarms": sorted(alarms.values(), key=lambda a: a["activated_s"]),
        "held": {name: list(roles) for name, roles in o.held.items()},
        "output_writes": [{**w, "at_s": at(w["ts"])} for w in confirmed],
        "missed": missed, "ok": not missed,
        "clock_steps": o.timeline.as_list() if o.timeline is not None else [],
    }


def _served(session: LiveDrill, outputs: dict[str, Output]) -> set[str]:
    """The outputs serving the drill's room (the output planner's rooms of each)."""
    rooms = session.core.planner.rooms
    return {o_id for o_id in outputs if session.room in rooms.get(o_id, set())}
