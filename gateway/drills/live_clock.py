"""A live drill's times on one clock when the wall clock steps while it runs.

A drill is judged by wall stamps: when each drill alarm became active and was acknowledged
(journal events), when each output was written (the recorder's output changes), against the
drill's start. NTP stepping a Pi's clock (it has no RTC) or an operator's `date -s` during a
drill put those on two clocks: an hour forward made every detection "3600 s late", a step back
put acknowledgements before the alarms, and the drill's incident record missed its own window.

The drill follows the step as the flight recorder does (gateway.recorder.clockstep): before
each round it compares wall minus monotonic time with the last round's (`WallStepWatch`); on
a step it moves its start and its own stamps to the new clock and notes the step. Journal
events keep their stamps (they were published as they are); `on_new_clock` moves one to the
clock after the steps: an event journalled before the step was seen is on the old clock,
unless it was stamped between the last round before the step and the round that saw it
*and* its stamp lies in the new clock's span of that interval (an acknowledge that came right
after the step). The recorder moves the output changes itself.
"""

from __future__ import annotations

from gateway.clock import Clock, WallStepWatch
from gateway.records import dataclass


@dataclass(frozen=True, slots=True)
class SeenStep:
    """A wall-clock step a drill saw at a round."""

    by_ns: int
    seen_ns: int
    """The wall time (new clock) of the round that saw it."""
    since_ns: int
    """The wall time of the round before it, moved to the new clock."""
    seq_before: int
    """The journal's last sequence at the round before it: events up to it are old-clock."""
    seq_seen: int
    """The journal's last sequence at the round that saw it: later events are new-clock."""
    at_s: float
    """Seconds into the drill (monotonic) when it was seen."""


class DrillTimeline:
    """The wall-clock steps seen during one drill (see the module docstring)."""

    def __init__(self, clock: Clock, seq: int) -> None:
        self.clock = clock
        self._watch = WallStepWatch(clock)
        self._start_mono = clock.monotonic()
        self._last_ns = clock.now_ns()
        self._last_seq = seq
        self.steps: list[SeenStep] = []

    def follow(self, seq: int) -> int:
        """At a round (`seq`: the journal's last sequence now): the step since the last
        round, in ns (0: none)."""
        by = self._watch.check()
        now = self.clock.now_ns()
        if by:
            self.steps.append(SeenStep(
                by_ns=by, seen_ns=now, since_ns=self._last_ns + by, seq_before=self._last_seq,
                seq_seen=seq, at_s=round(self.clock.monotonic() - self._start_mono, 3)))
        self._last_ns, self._last_seq = now, seq
        return by

    def on_new_clock(self, ts: int, seq: int) -> int:
        """A journalled event's stamp `ts` (its sequence `seq`) on the clock after every step
        seen so far."""
        for step in self.steps:
            if seq > step.seq_seen:
                continue  # journalled after the step was seen: on its new clock
            if seq > step.seq_before and step.since_ns <= ts <= step.seen_ns:
                continue  # between the rounds, stamped after the step
            ts += step.by_ns
        return ts

    def as_list(self) -> list[dict[str, float]]:
        """The steps for the drill's evaluation: seconds into the drill and by how much."""
        return [{"at_s": s.at_s, "by_s": s.by_ns / 1e9} for s in self.steps]
