"""One timeline for the evidence when the wall clock steps.

A Raspberry Pi has no RTC: it boots on a stale clock (fake-hwclock's last shutdown) and NTP
steps it, often minutes or hours forward, often while the gateway already runs; an operator's
`date -s` steps it either way. Samples and journal events are stamped with the wall clock, so
the flight recorder would hold the time before the step on one clock and the time after it
on another: a step back put the new samples *before* the old ones (read back in time order,
an incident record lost the overlap and spliced the two), a step forward closed an open
incident at once (its end, `post` after the room's last alarm, was suddenly in the past).

The clock after a step is the one to believe (that is why it was stepped), and the monotonic
clock says how far apart the samples truly were. So `ClockStepFollower`, before each sample
batch is recorded, compares wall minus monotonic time with the last batch's; past
`STEP_NS` it moves everything recorded so far by the step: the recorder's rings, and each
open incident's window, copy cursors, samples, events, output changes and trigger — and the
recent events and output changes a new incident begins with —, and the record says so
(`clock_steps`: when, by how much; docs/incidents.md). Samples of the batch stamped before the
step (a poll that straddled it) are moved too. What was already published or journalled keeps
its stamps: a record's times before a step differ from the journal's by that step.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from gateway.clock import STEP_NS, Clock, WallStepWatch
from gateway.field.sample import Sample

if TYPE_CHECKING:
    from gateway.recorder.incidents import IncidentKeeper, OpenIncident
    from gateway.recorder.ring import FlightRecorder, Recorded

log = logging.getLogger("roomwarden.recorder")

MAX_NOTED_STEPS = 64
"""Steps an incident's record lists at most (later ones are followed, not listed)."""
_MS = 1_000_000

__all__ = ["STEP_NS", "ClockStepFollower", "WallStepWatch", "follow_step", "restamped"]


class ClockStepFollower:
    """See the module docstring: `before(batch)` ahead of each `FlightRecorder.record`."""

    def __init__(self, clock: Clock, recorder: FlightRecorder,
                 keeper: IncidentKeeper | None) -> None:
        self.clock = clock
        self.recorder = recorder
        self.keeper = keeper
        self.watch = WallStepWatch(clock)
        self.steps = 0

    def before(self, batch: list[Sample]) -> list[Sample]:
        """`batch` as the recorder should take it (moved samples stamped before a step)."""
        step = self.watch.check()
        if not step:
            return batch
        now = self.clock.now_ns()
        self.steps += 1
        log.warning("event=clock_stepped by_ms=%d rings=%d open_incidents=%d reason=%r",
                    step // _MS, len(self.recorder.rings),
                    len(self.keeper.open) if self.keeper is not None else 0,
                    "the wall clock was stepped: what was recorded is moved to the new clock")
        self.recorder.shift(step)
        if self.keeper is not None:
            follow_step(self.keeper, step, now)
        return restamped(batch, step, now)


def restamped(batch: list[Sample], step: int, now: int) -> list[Sample]:
    """The batch with each sample stamped before the step moved by it: a sample whose time is
    nearer the old clock's now (`now - step`) than the new one's."""
    old_now = now - step
    if not any(abs(s.ts - old_now) < abs(s.ts - now) for s in batch):
        return batch
    return [s._replace(ts=s.ts + step) if abs(s.ts - old_now) < abs(s.ts - now) else s
            for s in batch]


def follow_step(keeper: IncidentKeeper, step: int, now: int) -> None:
    """Move the keeper's open incidents and recent history by `step` ns (the recorder's rings
    were moved already)."""
    keeper.recent_events = deque((dataclasses.replace(e, ts=e.ts + step)
                                  for e in keeper.recent_events),
                                 maxlen=keeper.recent_events.maxlen)
    keeper.recent_outputs = deque((_moved(c, step) for c in keeper.recent_outputs),
                                  maxlen=keeper.recent_outputs.maxlen)
    keeper.ended = {room: end + step for room, end in keeper.ended.items()}
    for incident in keeper.open.values():
        shift_incident(incident, step, now)


def shift_incident(incident: OpenIncident, step: int, now: int) -> None:
    """An open incident moved to the new clock, the step noted in its record."""
    incident.trigger = dataclasses.replace(incident.trigger, ts=incident.trigger.ts + step)
    incident.start_ns += step
    incident.end_ns += step
    if incident.cut_ns is not None:
        incident.cut_ns += step
    incident.copied_ns = {p: t + step for p, t in incident.copied_ns.items()}
    for ring in incident.rings.values():
        ring.shift(step // _MS)
    incident.events = [_moved(e, step) for e in incident.events]
    incident.outputs = [_moved(c, step) for c in incident.outputs]
    if len(incident.clock_steps) < MAX_NOTED_STEPS:
        incident.clock_steps.append({"at_ns": now, "by_ns": step})
    incident.saved_through = None  # its progress file is on the old clock: written anew


def _moved(item: dict[str, Any], step: int) -> dict[str, Any]:
    return {**item, "ts": item["ts"] + step}


def in_order(samples: list[Recorded]) -> list[Recorded]:
    """The samples but any older than one before it (a step back shorter than `STEP_NS`, which
    is not followed): an incident's rings hold theirs in time order (gateway.recorder.record
    reads them back by time)."""
    if all(a.ts <= b.ts for a, b in pairwise(samples)):
        return samples
    kept: list[Recorded] = []
    for sample in samples:
        if not kept or sample.ts >= kept[-1].ts:
            kept.append(sample)
    return kept
