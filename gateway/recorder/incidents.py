"""Incident records: when an alarm of the configured severity activates, freeze what happened
around it in its room — the recorded samples from `pre` before the trigger to `post` after it
(longer while the room's alarms stay active, at most `max_duration`), every journal event of
the room, every output command with its read-back, the config identity and the gateway's
health — and store it (gateway.recorder.store). The record format is in docs/incidents.md.

The keeper is driven by the data path (`observe`, once per sample batch): it sleeps when the
gateway does, reads the journal only when its sequence moved, and copies from the flight
recorder at most every `COPY_EVERY` seconds, so an incident longer than the recorder's window
loses nothing.

An incident keeps at most `MAX_INCIDENT_SAMPLES` samples: past them it stops copying samples
(at one moment for all its points) and its record says so (`cut`); its events go on.

Its record is written whole when it opens and when it closes; while it is open, each save
appends what it gained to its progress file (gateway.recorder.progress), from which the next
start rebuilds the record if the process died. A room's record begins no earlier than its last
one ended (a chattering alarm that reopens incidents back to back does not record, and write,
the same samples twice).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gateway.alarms.events import AlarmEvent, EventKind, is_hidden_rise
from gateway.alarms.lifecycle import AlarmState
from gateway.alarms.types import Severity
from gateway.contract.records import MAX_INCIDENT_BYTES, MAX_RECORD_BYTES
from gateway.recorder import progress
from gateway.recorder.clockstep import in_order
from gateway.recorder.incident_ids import IncidentIds, incident_id
from gateway.recorder.incident_state import OpenIncident, OutputSnapshot, RoomContext, Sources
from gateway.recorder.progress import Since, mark_interrupted
from gateway.recorder.record import record_of, record_pieces
from gateway.recorder.ring import CHUNK, FlightRecorder, PointRing
from gateway.recorder.settings import IncidentSettings
from gateway.recorder.store import IncidentStore

log = logging.getLogger("roomwarden.incidents")

COPY_EVERY = 5.0
"""Seconds between copies from the recorder into an open incident (and activity checks)."""
SAVE_EVERY = 60.0
"""An open incident is written to disk at its trigger, then at least this often (appended to
its progress file), then closed (by a writer thread): what a crash may lose."""
MAX_INCIDENT_SAMPLES = 4_000_000
"""Samples an incident keeps at most (all its points together), so that its record can be sent
and read back: a sample is at most about 40 bytes of the record's JSON (a 13-digit millisecond
time, a double's 17 digits with sign and exponent, its quality, commas: 160 MB for all, of the
reader's 256 MiB) and at most about 10 compressed (random doubles; 40 MB of the wire's 64 MiB).
At 1,000 samples a second that is 66 minutes."""
assert MAX_INCIDENT_SAMPLES * 40 <= MAX_RECORD_BYTES * 0.65
assert MAX_INCIDENT_SAMPLES * 10 <= MAX_INCIDENT_BYTES * 0.65
RESUMED = ("active when the gateway started (a restart or a power cut during the incident): "
           "this record continues the one it interrupted")
MAX_INCIDENT_ITEMS = 20_000
"""Events, and output changes, an open incident keeps at most (each ~0.5 KB in memory)."""
RECENT_EVENTS = 5000
RECENT_OUTPUT_CHANGES = 2000
_NS = 1_000_000_000
_MS = 1_000_000
"""ns: the recorder keeps timestamps to the millisecond (the next copy begins one after the
last copied)."""
_ACTIVE = (AlarmState.ACTIVE_UNACKNOWLEDGED, AlarmState.ACTIVE_ACKNOWLEDGED)

class IncidentKeeper:
    def __init__(self, recorder: FlightRecorder, store: IncidentStore,
                 settings: IncidentSettings, sources: Sources,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.recorder = recorder
        self._monotonic = monotonic
        """Seconds for the copy and save intervals (a test's clock)."""
        self.store = store
        self.settings = settings
        self.sources = sources
        self.seq = sources.last_seq()
        """The last journal event looked at (events before the keeper started are not)."""
        self.open: dict[str, OpenIncident] = {}
        """Open incidents by room."""
        self._ids = IncidentIds(store)
        self._resumed = False
        """The alarms active at the start were looked at (`_resume`, at the first batch)."""
        self.recent_events: deque[AlarmEvent] = deque(maxlen=RECENT_EVENTS)
        self.recent_outputs: deque[dict[str, Any]] = deque(maxlen=RECENT_OUTPUT_CHANGES)
        self._outputs: dict[str, OutputSnapshot] = {}
        self._next_copy = 0.0
        self.ended: dict[str, int] = {}
        """Room → the end of its last closed record: the next one of the room begins after it
        (a chattering alarm reopening incidents back to back kept each sample twice)."""
        self._broken: set[str] = set()
        """Open incidents whose last save failed: the next is written whole (the writer
        thread's own: it takes the saves in order)."""
        self.closed = 0
        self.saved = 0
        self.failures = 0
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="incidents")
        self.on_final: Callable[[str, str], None] | None = None
        """Told (on the writer thread) of every record saved closed or interrupted: its id and
        status (the uplink sends it: gateway.recorder.hook)."""
        self.recovered: list[str] = []
        """Records a dead process left `open`, marked `interrupted` (by `recovery`)."""
        self.recovery = self._writer.submit(self._recover)
        """Start-up's work on the stored records, the writer's first (the gateway's start
        reads none of them: an alarm never waits for it)."""

    def _recover(self) -> None:
        try:
            self.store.remove_temporaries()
            self.recovered.extend(mark_interrupted(self.store))
        except Exception:  # an unreadable directory: logged, the gateway runs on
            log.exception("event=incident_recovery_failed")

    def in_writer(self, work: Callable[[], None]) -> None:
        """Run `work` on the writer thread, after the saves handed to it so far (not after
        `close_all`)."""
        with contextlib.suppress(RuntimeError):  # shut down: the next start does it
            self._writer.submit(work)

    def observe(self) -> None:
        """After each sample batch: output changes, new journal events, open incidents."""
        if not self._resumed:
            self._resumed = True
            self._resume()
        self._watch_outputs()
        if self.sources.last_seq() != self.seq:
            for event in self.sources.events_since(self.seq):
                self.seq = max(self.seq, event.seq)
                self._on_event(event)
        if self.open and self._monotonic() >= self._next_copy:
            self._next_copy = self._monotonic() + COPY_EVERY
            for incident in list(self.open.values()):
                self._advance(incident)

    def _watch_outputs(self) -> None:
        """New commands (the safety core wants another state) since the last batch."""
        now = self.sources.now_ns()
        for output_id, snap in self.sources.output_states().items():
            before = self._outputs.get(output_id)
            self._outputs[output_id] = snap
            if before is not None and before[0] != snap[0] and snap[0] is not None:
                # stamped when the core asked for it (the driver's time), not when this batch
                # noticed: a write done in between came before its command (the audit)
                self._output_change({"ts": snap[5] or now, "output": output_id,
                                     "kind": "command",
                                     "written": snap[0], "read_back": None, "error": None,
                                     "writes": snap[3], "pending": True})

    def on_written(self, output_id: str, on: bool, snap: OutputSnapshot) -> None:
        """A write completed (from the output driver): its time, what was written, the state
        read back (None when it failed) and the error."""
        _, confirmed, error, writes, last_write_ns, _ = snap
        self._output_change({"ts": last_write_ns, "output": output_id, "kind": "write",
                             "written": on, "read_back": confirmed if error is None else None,
                             "error": error, "writes": writes, "pending": False})

    def _output_change(self, change: dict[str, Any]) -> None:
        self.recent_outputs.append(change)
        for incident in self.open.values():
            if change["output"] in incident.context.outputs:
                _kept(incident, incident.outputs, change)

    def _on_event(self, event: AlarmEvent) -> None:
        self.recent_events.append(event)
        for incident in self.open.values():
            if event.room in (incident.room, None):
                _kept(incident, incident.events, event.as_dict())
            if event.previous_state in _ACTIVE and not event.drill \
                    and (event.room or "site") == incident.room:
                # an alarm of the room active until this event: `post` from then, though
                # the keeper's look (every COPY_EVERY) comes later and finds the room quiet
                self._extend(incident, event.ts)
        if self._opens(event) and (event.room or "site") not in self.open:
            self._begin(event)

    def _resume(self) -> None:
        """Alarms active at the start (restored from the journal: a restart mid-fire) open a
        record again, triggered by the alarm as it stands, noted as resumed — the rest of the
        fire was in no record, as one opens only at an activation (the incident audit)."""
        level = Severity(self.settings.severity).level
        for view in self.sources.active_alarms():
            room = view.room or "site"
            if not self.settings.enabled or view.drill or view.state not in _ACTIVE \
                    or view.severity.level > level or room in self.open:
                continue
            self._begin(AlarmEvent(
                seq=self.seq, ts=self.sources.now_ns(), kind=EventKind.ALARM,
                rule=view.key.rule, subject=view.key.subject, state=view.state,
                previous_state=view.state, value=view.value, severity=view.severity,
                actor="system", note=RESUMED, first_out=view.first_out, room=view.room,
                title=view.title))

    def _opens(self, event: AlarmEvent) -> bool:
        """An activation of the configured severity, also a hidden one (`is_hidden_rise`:
        nothing is annunciated, but a hazard happened and its protective outputs switched on —
        what it was is to be evaluated afterwards like any other)."""
        s = self.settings
        activated = (event.state is AlarmState.ACTIVE_UNACKNOWLEDGED
                     and event.previous_state in (AlarmState.NORMAL,
                                                  AlarmState.RETURNED_UNACKNOWLEDGED))
        return (s.enabled and event.kind is EventKind.ALARM
                and (activated or is_hidden_rise(event))
                and event.severity is not None and not event.drill  # issue 12: save_drill
                and event.severity.level <= Severity(s.severity).level)

    def _begin(self, trigger: AlarmEvent) -> None:
        room = trigger.room or "site"
        start = trigger.ts - int(self.settings.pre * _NS)
        if room in self.ended:  # the room's last record holds what came before its end
            start = max(start, min(self.ended[room] + _MS, trigger.ts))
        incident = OpenIncident(
            id=self._ids.new(trigger, resumed=trigger.note == RESUMED), room=room, trigger=trigger,
            context=self.sources.room_context(room), start_ns=start,
            end_ns=trigger.ts + int(self.settings.post * _NS),
            health_at_trigger=self.sources.health(), identity=self.sources.identity())
        incident.events = [e.as_dict() for e in self.recent_events
                           if e.ts >= start and e.room in (room, None)]
        incident.outputs = [c for c in self.recent_outputs
                            if c["ts"] >= start and c["output"] in incident.context.outputs]
        self.open[room] = incident
        log.warning("event=incident_opened id=%s room=%s rule=%s subject=%s severity=%s "
                    "points=%d", incident.id, room, trigger.rule, trigger.subject,
                    trigger.severity, len(incident.context.points))
        self._advance(incident, force_save=True)

    def _extend(self, incident: OpenIncident, active_at: int) -> None:
        """An alarm of the incident's room was active at `active_at` (ns): end `post` after it,
        at most `max_duration` after the trigger."""
        cap = incident.trigger.ts + int(self.settings.max_duration * _NS)
        incident.end_ns = min(cap, max(incident.end_ns,
                                       active_at + int(self.settings.post * _NS)))

    def _advance(self, incident: OpenIncident, force_save: bool = False) -> None:
        """Copy what the recorder got since the last copy; extend, save or close."""
        now = self.sources.now_ns()
        if self.sources.room_active(incident.room):  # `post` after the room's last alarm
            self._extend(incident, now)
        self._copy(incident, now)  # (after the extension: up to the old end only, the tail
        done = now >= incident.end_ns  # between it and now was lost: the incident audit)
        if done or force_save or self._monotonic() - incident.saved_mono >= SAVE_EVERY:
            self._save(incident, "closed" if done else "open")
        if done:
            del self.open[incident.room]
            self.ended[incident.room] = incident.end_ns
            self.closed += 1
            log.info("event=incident_closed id=%s room=%s events=%d outputs=%d",
                     incident.id, incident.room, len(incident.events), len(incident.outputs))

    def _copy(self, incident: OpenIncident, now: int) -> None:
        if incident.cut_ns is not None:
            return
        if not incident.max_samples:
            incident.max_samples = MAX_INCIDENT_SAMPLES
        until = min(now, incident.end_ns)
        room = incident.max_samples - incident.samples
        rings = self.recorder.rings
        if sum(len(rings[p]) for p in incident.context.points if p in rings) > room:
            until = self._cut(incident, until, room)
        span = incident.end_ns - incident.start_ns + int(self.settings.max_duration * _NS)
        for point in incident.context.points:
            since = incident.copied_ns.get(point, incident.start_ns - _MS) + _MS
            fresh = in_order(self.recorder.samples(point, since, until))
            if not fresh:
                continue
            ring = incident.rings.get(point)
            if ring is None:
                ring = incident.rings[point] = PointRing(span / _NS,
                                                         incident.max_samples + CHUNK)
            ring.extend(fresh)
            incident.copied_ns[point] = fresh[-1].ts
            incident.samples += len(fresh)

    def _cut(self, incident: OpenIncident, until: int, room: int) -> int:
        """The recorder may hold more new samples than the incident has room for: if so, the
        time of the first it cannot keep (`cut_ns`, and the last to copy is just before it)."""
        stamps: list[int] = []
        for point in incident.context.points:
            since = incident.copied_ns.get(point, incident.start_ns - _MS) + _MS
            stamps += (s.ts for s in in_order(self.recorder.samples(point, since, until)))
        if len(stamps) <= room:
            return until
        stamps.sort()
        incident.cut_ns = stamps[room]
        log.warning("event=incident_cut id=%s room=%s max_samples=%d at_ns=%d reason=%r",
                    incident.id, incident.room, incident.max_samples, incident.cut_ns,
                    "the incident holds the most samples a record may (later ones not kept)")
        return incident.cut_ns - 1

    def _save(self, incident: OpenIncident, status: str) -> None:
        """Hand a frozen copy to the writer thread: decoding, JSON, gzip and fsync never run
        on the event loop (an alarm never waits for evidence keeping). One writer, so the
        saves of one incident land in order. An open incident whose progress file holds its
        earlier saves gets what it gained appended to it (gateway.recorder.progress); else,
        and when it ends, it is written whole."""
        incident.saved_ns = self.sources.now_ns()
        frozen = dataclasses.replace(
            incident, rings={p: r.frozen() for p, r in incident.rings.items()},
            events=list(incident.events), outputs=list(incident.outputs))
        since: Since | None = None
        if status == "open" and incident.saved_through is not None:
            since = (incident.saved_through, incident.saved_events, incident.saved_outputs)
        incident.saved_through = dict(incident.copied_ns) if status == "open" else None
        incident.saved_events, incident.saved_outputs = len(incident.events), len(
            incident.outputs)
        incident.saved_mono = self._monotonic()
        self._writer.submit(self._write, frozen, status, self.sources.health(), since)

    def _write(self, incident: OpenIncident, status: str, health: dict[str, Any],
               since: Since | None = None) -> None:
        try:
            if incident.id in self._broken:
                since = None
            if since is not None:
                try:
                    size = progress.append(self.store, incident, since, health)
                except OSError as exc:  # written whole instead
                    log.warning("event=incident_progress_failed id=%s error=%r", incident.id,
                                exc)
                    since = None
            if since is None and status == "open":
                size = progress.start(self.store, incident, health)
                size += self.store.write(incident.id, record_pieces(incident, status, health))
            elif since is None:
                size = self.store.write(incident.id, record_pieces(incident, status, health))
                progress.drop(self.store, incident.id)
        except Exception as exc:  # a full disk, a bug: logged, the gateway runs on
            self.failures += 1
            if status == "open":
                self._broken.add(incident.id)
            log.error("event=incident_save_failed id=%s error=%r", incident.id, exc)
            return
        self._broken.discard(incident.id)
        self.saved += 1
        log.info("event=incident_saved id=%s status=%s bytes=%d%s", incident.id, status, size,
                 "" if since is None else " appended=progress")
        if status != "open" and self.on_final is not None:
            try:
                self.on_final(incident.id, status)
            except Exception:  # sending is retried at the next start; the gateway runs on
                log.exception("event=incident_send_failed id=%s", incident.id)

    def save_drill(self, trigger: AlarmEvent, room: str, start_ns: int, end_ns: int,
                   events: list[AlarmEvent], evaluation: dict[str, Any]) -> str:
        """Issue 12: a finished live drill (gateway.drills.live_control) as an incident of kind
        `drill`: the room's recorded samples from `pre` before its start (`trigger`: the drill's
        start event) to its end, its events and output changes, and `drill`: its evaluation.
        Saved and sent like any other record; returns its id."""
        incident = OpenIncident(
            id=self._ids.new(dataclasses.replace(trigger, room=f"drill.{room}"[:80])),
            room=room, trigger=trigger,
            context=self.sources.room_context(room),
            start_ns=start_ns - int(self.settings.pre * _NS), end_ns=end_ns,
            health_at_trigger=self.sources.health(), identity=self.sources.identity(),
            events=[e.as_dict() for e in events], drill=evaluation)
        incident.outputs = [c for c in self.recent_outputs
                            if incident.start_ns <= c["ts"] <= end_ns
                            and c["output"] in incident.context.outputs]
        self._copy(incident, self.sources.now_ns())
        self._save(incident, "closed")
        return incident.id

    def close_all(self) -> None:
        """A stop: save every open incident as it stands (status `interrupted`) and wait for
        the writer."""
        for incident in list(self.open.values()):
            now = self.sources.now_ns()
            self._copy(incident, now)
            incident.end_ns = min(incident.end_ns, now)  # the window it holds, not the planned
            self._save(incident, "interrupted")
        self.open.clear()
        self._writer.shutdown(wait=True)


def _kept(incident: OpenIncident, into: list[dict[str, Any]], item: dict[str, Any]) -> None:
    """Append to an open incident's events or output changes, at most `MAX_INCIDENT_ITEMS`
    each (held in memory until it closes); past that counted in `dropped` (the record says)."""
    if len(into) < MAX_INCIDENT_ITEMS:
        into.append(item)
    else:
        incident.dropped += 1


__all__ = ["COPY_EVERY", "MAX_INCIDENT_SAMPLES", "SAVE_EVERY", "IncidentKeeper",
           "OpenIncident", "OutputSnapshot", "RoomContext", "Sources", "incident_id",
           "mark_interrupted", "record_of"]
