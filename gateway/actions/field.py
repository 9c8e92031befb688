"""What the field shows of the interlocks' blockers, and the log of the blocks it makes.

An interlock (`Interlock`: never run `output` while `while_on` is on) is about what runs in
the room, not what the gateway commands. A blocker commanded off can still run: a relay whose
contact welded (the driver reads it back on after writing it off), a module that holds the
coil on (its own polls show it), a contactor on manual (its feedback shows it acting). The
output planner is pure, so each round the safety core hands it the field's view as data — the
blockers the field shows on, each with what shows it:

* the output driver (`OutputDriver.seen_on`): the newest of the module's poll of the coil and
  the last write's read-back (`polled on`, `read back on`);
* supervision (`OutputSupervisor.acting`): the output's feedback input shows it acting (two
  fans on one airflow switch both show acting while either runs: conservative).

Such a blocker holds off the outputs interlocked with it whatever the plan wants of it
(`OutputPlanner.plan`), and `blocked_by` says so: `fan-1 (running in the field: read back on)`.

Unknown is not on. A blocker whose module is offline, whose newest poll is bad, or that no
write or poll has shown yet blocks only if it is wanted on or its feedback shows it acting:
a relay module that blips must not stop a fan purging hydrogen. Give a blocker whose running
matters when its module is down a feedback input on another device; that still shows it.

Break before make: a blocker switched off blocks until the field shows it off — its off write
read back (the same bus turn, before the module's next poll), or, with a feedback, until the
feedback stops showing it acting (a fan running down). Wanting a blocker on blocks though its
write failed, as before: conservative both ways.

The start and end of a block that only the field makes are logged once each
(`event=interlock_field_block`, `event=interlock_field_block_ended`, with how long it held),
at info: a blocker switched off makes a short one as it stops, and what keeps one running is
an alarm of its own — the driver's `actions.output_failure` (read back on after an off
write), supervision's `actions.output_unexpected_feedback`. A hold until reset that a field
block suspends is journalled like any suspension (gateway.safety).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from gateway.actions.planner import OutputPlan, OutputPlanner
from gateway.actions.supervision import OutputSupervisor
from gateway.clock import Clock

log = logging.getLogger("roomwarden.actions")

SeenOn = Callable[[Iterable[str]], Mapping[str, str]]
"""Of the outputs asked about, those whose coil the field shows on, with what shows it."""


class InterlockField:
    def __init__(self, planner: OutputPlanner, supervisor: OutputSupervisor,
                 clock: Clock) -> None:
        self.blocking = planner.blocking
        self.supervisor = supervisor
        self.clock = clock
        self.source: SeenOn | None = None
        """The output driver's view (`OutputDriver.seen_on`), set by the daemon; None where
        no driver runs (a drill's core on a manual clock): supervision alone."""
        self.logged: dict[str, tuple[str, float]] = {}
        """Output → the blocker of the field block logged as begun, and since when
        (monotonic)."""

    def view(self) -> dict[str, str]:
        """The blockers the field shows on, each with what shows it (one or both sources)."""
        if not self.blocking:
            return {}
        seen = dict(self.source(self.blocking)) if self.source is not None else {}
        for output_id, why in self.supervisor.acting(self.blocking).items():
            seen[output_id] = f"{seen[output_id]}, {why}" if output_id in seen else why
        return seen

    def note(self, plans: Mapping[str, OutputPlan]) -> None:
        """Log the start and the end of each block that only the field makes, once each."""
        if not self.blocking and not self.logged:
            return
        now = {o: plan for o, plan in plans.items() if plan.blocker_seen is not None}
        if not now and not self.logged:
            return
        t = self.clock.monotonic()
        for output_id, (blocker, since) in sorted(self.logged.items()):
            plan = now.get(output_id)
            if plan is None or plan.blocker != blocker:
                log.info("event=interlock_field_block_ended output=%s blocker=%s after_s=%.1f",
                         output_id, blocker, t - since)
                del self.logged[output_id]
        for output_id, plan in sorted(now.items()):
            if output_id not in self.logged and plan.blocker is not None:
                log.info("event=interlock_field_block output=%s blocker=%s field=%r (held "
                         "off: the blocker runs in the field although the plan has it off)",
                         output_id, plan.blocker, plan.blocker_seen)
                self.logged[output_id] = (plan.blocker, t)

    def adopt(self, previous: InterlockField, outputs: Iterable[str]) -> None:
        """A config apply: the driver's view carries on, and so do the blocks logged as begun
        of outputs that still exist (their end is logged by this core)."""
        self.source = previous.source
        kept = set(outputs)
        self.logged = {o: began for o, began in previous.logged.items() if o in kept}
