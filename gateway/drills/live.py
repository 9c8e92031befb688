"""A live drill: a drill file played on a running gateway, in one room, among real readings.

The drill's values are an *overlay*: a second rule engine, bound to the drill's room only and
started from the real engine's state, sees the room's real samples with the drill's points
replaced by the drill's signals. Its evaluations of the bindings that read a drilled point
become the drill's alarms — alarms of their own (subject `drill:<subject>`,
gateway.alarms.events.DRILL_PREFIX) in the same alarm manager, so they are journalled, sent
uplink, shown and acknowledged like any other, tagged drill everywhere, and never share a key
with a real alarm. The real engine keeps seeing the real samples, untouched: a real alarm of
the room sounds as always.

* Silent (the default): the drill's evaluations carry no output roles, so a drill alarm
  demands no output — no siren coil is written because of it. What it would have driven is
  kept for the evaluation (`held`). An evacuation drill keeps the roles: outputs are driven
  for real, and an acknowledgement silences them as usual.
* The drill ends by itself after its `duration`, when stopped (`request_stop`), and at once
  when a real rule of the room becomes active (a real hazard takes precedence: the drill's
  alarms are returned to normal in the same round and the real alarm is annunciated, siren
  and all, even in a silent drill). A config apply or a restart ends it too (the alarm
  manager ends drill alarms it restores).

The session is driven by the safety core (`SafetyCore.ingest` → `on_samples`,
`SafetyCore.step` → `step`), on the gateway's event loop; no I/O but the alarm journal.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway.alarms.events import DRILL_PREFIX, AlarmCommandError, AlarmEvent
from gateway.alarms.types import Evaluation
from gateway.config.section import replaced
from gateway.drills.live_clock import DrillTimeline
from gateway.drills.model import Drill, Step, live_problems
from gateway.drills.overlay_values import point_kinds, wrong_values
from gateway.drills.sitecheck import site_problems
from gateway.field.sample import Quality, Sample, Value
from gateway.records import dataclass, field
from gateway.rules.engine import RuleEngine
from gateway.sim.signals import Signal

if TYPE_CHECKING:
    from gateway.alarms.manager import AlarmManager
    from gateway.safety import SafetyCore

log = logging.getLogger("roomwarden.drill")

DRILL_ACTOR = "drill"
"""The actor of a drill file's own `acknowledge` steps."""


class LiveDrillError(ValueError):
    """A live drill that cannot start (the message says why; nothing was changed)."""


@dataclass
class LiveOutcome:
    """What a live drill observed, for its evaluation (gateway.drills.live_eval)."""

    start_ns: int
    start_seq: int
    """The journal's last sequence before the drill: its events come after."""
    end_ns: int | None = None
    end_reason: str | None = None
    real_hazard: list[str] = field(default_factory=list)
    """`rule@subject` of the real alarms that ended the drill."""
    held: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Silent drill: drill alarm (`rule@subject`) → the output roles it would have driven."""
    wanted: list[tuple[int, str, bool]] = field(default_factory=list)
    """(ns, output, on): the safety core's wanted outputs changing during the drill."""
    timeline: DrillTimeline | None = None
    """The wall-clock steps seen while it ran (gateway.drills.live_clock)."""


class LiveDrill:
    def __init__(self, drill: Drill, core: SafetyCore, *, evacuation: bool, actor: str,
                 source: str = "") -> None:
        problems = live_problems(drill)
        cfg = core.loaded.config
        room = drill.room or ""
        if drill.room is not None and room not in {r.id for r in cfg.rooms}:
            problems.append(f"room {room!r} is no room of this gateway (rooms: "
                            f"{', '.join(sorted(r.id for r in cfg.rooms))})")
        if problems:
            raise LiveDrillError("; ".join(problems))
        devices = [d for d in cfg.devices if d.room == room]
        loaded = dataclasses.replace(core.loaded, config=replaced(cfg, devices=devices))
        self.engine = RuleEngine(core.engine.packs, loaded, core.clock, core.engine.overrides)
        self.room_points = {p.id for p in self.engine.points()}
        drilled: set[str] = set()
        for index, step in enumerate(drill.steps):
            named = [*(step.set or {}), *(step.release or [])]
            unknown = [p for p in named if p not in self.room_points]
            if unknown:
                raise LiveDrillError(f"steps[{index}]: {', '.join(unknown)} is no point of room "
                                     f"{room!r} on this gateway")
            drilled.update(step.set or {})
        wrong = wrong_values(drill, point_kinds(core.loaded, devices))
        if wrong:
            raise LiveDrillError("; ".join(wrong))
        absent = site_problems(drill, points=self.room_points, coils=set(),
                               devices={d.id for d in cfg.devices},
                               outputs={o.id for o in cfg.outputs}, packs=core.engine.packs)
        absent = [(where, why) for where, why in absent  # points: checked above, per room
                  if where[0] == "expect" or "acknowledge" in where]
        if absent:
            raise LiveDrillError("; ".join(
                "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in where)[1:]
                + f": {why.replace('drill', 'gateway')}"
                for where, why in absent))
        real = [str(v.key) for v in core.alarms.active()
                if v.room == room and not v.drill and v.condition]
        if real:
            raise LiveDrillError(f"room {room!r} has active alarms ({', '.join(real[:5])}): "
                                 "no drill while a real hazard is there")
        running: LiveDrill | None = core.drill
        if running is not None and not running.finished:
            raise LiveDrillError(f"drill {running.drill.drill!r} is running; stop it first")
        self.engine.adopt(core.engine)  # start from what the room reads now
        self.watched = {(b.rule, b.subject) for b in self.engine.binding_details()
                        if drilled.intersection(b.points)}
        if not self.watched:
            raise LiveDrillError(f"no rule of room {room!r} reads the points the drill sets "
                                 f"({', '.join(sorted(drilled)) or 'none'})")
        self.drill: Drill = drill
        self.core = core
        self.clock = core.clock
        self.evacuation = evacuation
        self.actor = actor
        self.source = source
        self.mode = "evacuation" if evacuation else "silent"
        self.started_mono = self.clock.monotonic()
        self.outcome = LiveOutcome(start_ns=self.clock.now_ns(),
                                   start_seq=core.alarms.last_seq,
                                   timeline=DrillTimeline(self.clock, core.alarms.last_seq))
        self.finished: bool = False
        self.on_end: Callable[[LiveDrill], None] | None = None
        """Called once, right after the round that ended the drill."""
        self._steps = sorted(drill.steps, key=lambda s: s.at)
        self._overlay: dict[str, tuple[Signal, float]] = {}
        self._stop: str | None = None
        self._announced = False
        self._last_wanted: dict[str, bool] = dict(core.wanted)

    # --- what the safety core calls ---------------------------------------------------------

    def on_samples(self, batch: list[Sample]) -> None:
        """The room's real samples, the drilled points' values replaced, to the drill's engine."""
        if self.finished:
            return
        mine = [s for s in batch if s.point in self.room_points]
        if not mine:
            return
        if self._overlay:
            now = self.clock.monotonic()
            mine = [Sample(s.point, self._value(s.point, now), s.ts, Quality.GOOD)
                    if s.point in self._overlay else s for s in mine]
        self.engine.on_samples(mine)

    def step(self, real: list[Evaluation], alarms: AlarmManager
             ) -> tuple[list[AlarmEvent], list[Evaluation]]:
        """One evaluation round: (events of the drill's own doing, the drill's evaluations for
        the alarm manager). `real`: the real evaluations of this round (the rules' active
        ones, gateway.safety; only active ones are read)."""
        events: list[AlarmEvent] = []
        if self.finished:
            return events, []
        self.follow_clock()
        if not self._announced:
            self._announced = True
            events += alarms.drill_event(self.drill.drill, self.actor, self.banner(), self.room,
                                        running=True)
            log.warning("event=drill_started drill=%s room=%s mode=%s actor=%s duration=%gs "
                        "title=%r", self.drill.drill, self.room, self.mode, self.actor,
                        self.drill.duration, self.drill.title)
        self._watch_outputs()
        hazards = [f"{e.rule}@{e.subject}" for e in real if e.active and e.room == self.room]
        elapsed = self.clock.monotonic() - self.started_mono
        why = (f"a real alarm in room {self.room}: {', '.join(hazards[:5])}" if hazards
               else self._stop or ("timeout: the drill's duration "
                                   f"{self.drill.duration:g} s is over"
                                   if elapsed >= self.drill.duration else None))
        if why is not None:
            self.outcome.real_hazard = hazards
            return events + self._end(alarms, why), []
        while self._steps and self._steps[0].at <= elapsed:
            events += self._apply(self._steps.pop(0), alarms)
        out = []
        for ev in self.engine.evaluate():
            if (ev.rule, ev.subject) not in self.watched:
                continue
            subject = DRILL_PREFIX + ev.subject
            if not self.evacuation and ev.actions:
                if ev.active:
                    self.outcome.held.setdefault(f"{ev.rule}@{subject}", ev.actions)
                ev = dataclasses.replace(ev, actions=())
            out.append(dataclasses.replace(ev, subject=subject))
        return events, out

    def next_deadline(self) -> float | None:
        """Monotonic time of the next round the drill needs with no new sample: past while its
        start is not yet journalled or a stop is asked for, else its next step, its end, or a
        timer of its engine (None once finished). Among the safety core's deadlines, so a
        drill on a site polled every 30 s ends and stops on time."""
        if self.finished:
            return None
        if not self._announced or self._stop is not None:
            return self.started_mono  # due already (a time read now would be in the future)
        times = [self.started_mono + self.drill.duration, self.engine.next_deadline()]
        if self._steps:
            times.append(self.started_mono + self._steps[0].at)
        return min(t for t in times if t is not None)

    # --- control ----------------------------------------------------------------------------

    def follow_clock(self) -> None:
        """Move the drill's own stamps to the wall clock's new time if it stepped since the
        last round (gateway.drills.live_clock)."""
        o = self.outcome
        if o.timeline is None or self.finished:
            return
        by = o.timeline.follow(self.core.alarms.last_seq)
        if by:
            o.start_ns += by
            o.wanted = [(ns + by, output, on) for ns, output, on in o.wanted]
            log.warning("event=drill_clock_stepped drill=%s by_ms=%d reason=%r",
                        self.drill.drill, by // 1_000_000, "the wall clock was stepped: the "
                        "drill's times are moved to the new clock")

    def on_new_clock(self, event: AlarmEvent) -> AlarmEvent:
        """A journalled event with its time on the drill's clock (moved by the steps seen)."""
        timeline = self.outcome.timeline
        if timeline is None or not timeline.steps:
            return event
        ts = timeline.on_new_clock(event.ts, event.seq)
        return event if ts == event.ts else dataclasses.replace(event, ts=ts)

    def request_stop(self, why: str) -> None:
        """End the drill at the next evaluation round."""
        self._stop = self._stop or why

    @property
    def room(self) -> str:
        return self.drill.room or ""

    def banner(self) -> str:
        ends = self.outcome.start_ns + int(self.drill.duration * 1e9)
        return (f"started: {self.drill.title} ({self.mode} drill in room {self.room}, by "
                f"{self.actor}; ends by itself at "
                f"{_iso(ends)}{'' if self.evacuation else '; outputs held'})")

    def banner_fields(self) -> dict[str, Any]:
        """The panel's drill banner (gateway.panel.views.DrillBanner)."""
        o = self.outcome
        return {"drill": self.drill.drill, "title": self.drill.title, "room": self.room,
                "mode": self.mode, "actor": self.actor, "started_ns": o.start_ns,
                "ends_ns": o.start_ns + int(self.drill.duration * 1e9)}

    def status(self) -> dict[str, Any]:
        """The running (or finished) drill, for the control socket and the panel's banner."""
        o = self.outcome
        return {**self.banner_fields(), "source": self.source, "finished": self.finished,
                "ended_ns": o.end_ns, "end_reason": o.end_reason}

    # --- internals --------------------------------------------------------------------------

    def _value(self, point: str, now: float) -> Value:
        signal, origin = self._overlay[point]
        return signal.at(now - origin)

    def _apply(self, step: Step, alarms: AlarmManager) -> list[AlarmEvent]:
        now = self.clock.monotonic()
        if step.set is not None:
            for point, signal in step.set.items():
                self._overlay[point] = (signal, now)
        elif step.release is not None:
            for point in step.release:
                self._overlay.pop(point, None)
        elif step.acknowledge is not None:
            keys = [v.key for v in alarms.active() if v.drill and v.acknowledgeable and (
                step.acknowledge == "all" or v.key.rule in step.acknowledge)]
            if keys:
                try:
                    return alarms.acknowledge(keys, DRILL_ACTOR, "drill step")
                except AlarmCommandError as exc:
                    log.warning("event=drill_step_failed drill=%s error=%s", self.drill.drill,
                                exc)
        return []

    def _watch_outputs(self) -> None:
        """The outputs the safety core wanted after the last round, as they change."""
        now = self.clock.now_ns()
        for output, on in self.core.wanted.items():
            if self._last_wanted.get(output) != on:
                self.outcome.wanted.append((now, output, on))
                self._last_wanted[output] = on

    def end(self, alarms: AlarmManager, why: str) -> list[AlarmEvent]:
        """End the drill now, outside a round (its safety core is being replaced): its alarms
        and its end journalled with `why`, the evaluation made (`on_end`)."""
        return [] if self.finished else self._end(alarms, why)

    def _end(self, alarms: AlarmManager, why: str) -> list[AlarmEvent]:
        self.follow_clock()
        self.finished = True
        self._overlay.clear()
        self.outcome.end_ns = self.clock.now_ns()
        self.outcome.end_reason = why
        events = alarms.end_drill(DRILL_ACTOR, f"drill ended: {why}")
        events += alarms.drill_event(self.drill.drill, self.actor, f"ended: {why}", self.room,
                                     running=False)
        log.warning("event=drill_ended drill=%s room=%s reason=%r", self.drill.drill,
                    self.room, why)
        if self.on_end is not None:
            self.on_end(self)
        return events


def _iso(ns: int) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9))
