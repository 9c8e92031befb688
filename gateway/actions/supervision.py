"""Supervised outputs: does the output really do what it is commanded? Pure, clock-injected.

An output with `feedback: {device, point, expect, within}` is watched against the state the
safety core wants it in:

* commanded on, but the feedback point has not shown `expect` for `within` seconds (a fan whose
  airflow switch stays open, a siren drawing no current) → `actions.output_no_feedback`;
* commanded off, but the feedback shows `expect` for `within` seconds (a welded contactor, a
  fan running on manual) → `actions.output_unexpected_feedback`.

The clock of a mismatch starts at the command change (the feedback gets `within` to follow),
or, when the feedback had agreed with the command and then stopped (a fan that stops while
running), at the first sample showing that; only a good sample that arrived after the command
counts as evidence. Every comparison is on the monotonic clock (when the command was seen, when
each sample arrived), never on the samples' wall-clock stamps: a Pi without an RTC has its
clock stepped by NTP, and after a step back every sample would be stamped before the command
and the check would go blind for as long as the step. A feedback device that is offline or bad
keeps the alarm as it was (the device's own alarms report that) and never raises one. Worst
case, a mismatch is raised `within` + one poll of the feedback device after it began. Until the
feedback has given a verdict on the present command (it agreed, or disagreed past `within`),
the supervisor reports nothing for that output, so an alarm restored from the journal after a
restart, or carried through a config apply, stands until the feedback shows otherwise.

The feedback also tells the interlocks (`acting`, gateway.actions.field): an output whose
feedback shows it acting counts as on for the outputs interlocked with it, at once and whatever
it is commanded — a welded contactor blocks them before `within` raises its alarm.

Outputs may share a feedback point (two fans in one duct on one airflow switch): each is
supervised by it on its own command. The switch then shows the duct, not each fan: one fan
that stops while the other keeps the air moving is not seen. `roomwarden check` warns about a
shared point, since a copy-paste slip looks the same (gateway.config.crosscheck).

Escalations (`escalations:` of a rule pack) make the alarm more severe and ask for more
outputs while a hazard alarm is present in a room the output serves: an exhaust fan that does
not run in a battery room while hydrogen is above warning is critical and inhibits charging.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping

from gateway.alarms.events import AlarmView
from gateway.alarms.types import Evaluation, Severity
from gateway.clock import Clock
from gateway.config.site import Output, OutputFeedback
from gateway.field.bus_loop import ONLINE_POINT
from gateway.field.sample import Quality, Sample
from gateway.records import dataclass
from gateway.rules.model import Escalation, RulePack

NO_FEEDBACK_RULE = "actions.output_no_feedback"
UNEXPECTED_FEEDBACK_RULE = "actions.output_unexpected_feedback"
DEFAULT_SEVERITY = Severity.MAJOR


@dataclass
class _Watch:
    output: Output
    feedback: OutputFeedback
    point: str
    rooms: tuple[str, ...]
    room_types: frozenset[str]
    commanded: bool = False
    command_t: float = 0.0
    """Monotonic time the present command was seen."""
    value: bool | None = None
    """The latest good feedback value (None: none yet, or the latest sample was bad)."""
    shown: bool | None = None
    """The latest good feedback value, kept through bad samples until the feedback device
    is offline (None: unknown): what `acting` reads — one failed poll of the feedback must
    not let what the output interlocks start."""
    sample_ns: int = 0
    """The latest good sample's wall-clock stamp: for the alarm's timestamp only."""
    sample_t: float = float("-inf")
    """Monotonic time the latest good sample arrived: what every comparison uses."""
    mismatch_since: float | None = None
    agreed: bool = False
    """The feedback has agreed with the command since it was given."""
    judged: bool = False
    """There is a verdict for the present command (agreement, or a mismatch past `within`);
    until then nothing is reported and an alarm keeps its state (after a restart or a config
    apply the journal's alarm stands until the feedback says otherwise)."""
    no_feedback: bool = False
    unexpected: bool = False


class OutputSupervisor:
    """Watches every output that names a feedback point."""

    def __init__(self, outputs: Iterable[Output], rooms: Mapping[str, Iterable[str]],
                 room_types: Mapping[str, str], clock: Clock,
                 escalations: Iterable[Escalation] = ()) -> None:
        self.clock = clock
        self.escalations = tuple(escalations)
        self.watches: dict[str, _Watch] = {}
        now = clock.monotonic()
        for output in outputs:
            if output.feedback is None:
                continue
            served = tuple(sorted(r for r in rooms.get(output.id, ()) if r))
            self.watches[output.id] = _Watch(
                output, output.feedback, f"{output.feedback.device}.{output.feedback.point}",
                served, frozenset(room_types.get(r, "other") for r in served),
                command_t=now)
        self._by_point: dict[str, list[_Watch]] = {}
        """Feedback point -> every watch on it: outputs may share one (two fans in one duct
        on one airflow switch), and each is supervised by it (the audit: a point mapped to one
        watch left the other fan's supervision silently dead)."""
        for watch in self.watches.values():
            self._by_point.setdefault(watch.point, []).append(watch)
        self._online = {f"{w.feedback.device}.{ONLINE_POINT}" for w in self.watches.values()}
        """The feedback devices' online points (in `_by_point` too): offline ends `shown`."""
        for watch in self.watches.values():
            self._by_point.setdefault(f"{watch.feedback.device}.{ONLINE_POINT}",
                                      []).append(watch)

    @staticmethod
    def escalations_of(packs: Iterable[RulePack]) -> list[Escalation]:
        return [e for pack in packs for e in pack.escalations]

    def ingest(self, batch: Iterable[Sample]) -> None:
        by_point = self._by_point
        if not by_point:
            return
        arrived: float | None = None
        for sample in batch:
            watches = by_point.get(sample.point)
            if watches is None:
                continue
            if sample.point in self._online:  # the feedback device's own online state
                if sample.value is False:
                    for watch in watches:
                        watch.shown = None
                continue
            if sample.quality is Quality.GOOD and isinstance(sample.value, bool):
                if arrived is None:
                    arrived = self.clock.monotonic()
                for watch in watches:
                    watch.value, watch.sample_ns, watch.sample_t = (sample.value, sample.ts,
                                                                    arrived)
                    watch.shown = sample.value
            else:
                for watch in watches:
                    watch.value = None

    def acting(self, outputs: Iterable[str]) -> dict[str, str]:
        """Of `outputs`, those whose feedback shows them acting now (its latest good sample
        `expect`), whatever they are commanded and however long `within` gives them: a fan
        still running down, or running on manual, is running (the interlocks' field view,
        gateway.actions.field). A bad sample tells nothing (the good one before it stands);
        a feedback device offline, or not read yet, shows nothing."""
        acting: dict[str, str] = {}
        for output_id in outputs:
            watch = self.watches.get(output_id)
            if watch is not None and watch.shown is not None \
                    and watch.shown == watch.feedback.expect:
                acting[output_id] = f"feedback {watch.point} shows it acting"
        return acting

    def evaluate(self, wanted: Mapping[str, bool], alarms: Iterable[AlarmView]
                 ) -> list[Evaluation]:
        """Two evaluations per supervised output with a verdict (no feedback, unexpected
        feedback); none for an output whose feedback has not yet shown anything since its
        command (the alarm manager keeps what it has)."""
        if not self.watches:
            return []
        now, now_ns = self.clock.monotonic(), self.clock.now_ns()
        # real alarms only: a live drill's hydrogen must never make a real fan alarm critical
        # and sound the real siren (the drills audit saw a silent drill do that)
        present = [(v.key.rule, v.room) for v in alarms if v.condition and not v.drill]
        out: list[Evaluation] = []
        for output_id, watch in self.watches.items():
            self._step(watch, bool(wanted.get(output_id, False)), now)
            if not watch.judged:
                continue
            room = watch.rooms[0] if watch.rooms else None
            for rule, active, what in (
                    (NO_FEEDBACK_RULE, watch.no_feedback, "commanded on but no feedback"),
                    (UNEXPECTED_FEEDBACK_RULE, watch.unexpected, "feedback without command")):
                escalation = self._escalation(rule, watch, present)
                title = f"Output {output_id} ({watch.output.role}): {what} from {watch.point}"
                severity: Severity = DEFAULT_SEVERITY
                actions: tuple[str, ...] = ("alarm_panel",)
                if escalation is not None:
                    title = f"{escalation.title} ({output_id})"
                    severity, actions = escalation.severity, escalation.actions
                out.append(Evaluation(rule=rule, subject=output_id, active=active,
                                      value=watch.value, severity=severity,
                                      ts=watch.sample_ns or now_ns, title=title, room=room,
                                      actions=actions))
        return out

    def _step(self, watch: _Watch, commanded: bool, now: float) -> None:
        if commanded != watch.commanded:
            watch.commanded, watch.command_t = commanded, now
            watch.mismatch_since, watch.agreed, watch.judged = None, False, False
            watch.no_feedback = watch.unexpected = False
        if watch.value is None or watch.sample_t < watch.command_t:
            return  # no evidence since the command: keep what we have
        running = watch.value == watch.feedback.expect
        if running == commanded:
            watch.mismatch_since, watch.agreed, watch.judged = None, True, True
            watch.no_feedback = watch.unexpected = False
            return
        if watch.mismatch_since is None:
            # never agreed since the command: the output has had since the command to act;
            # agreed and then lost (a fan that stopped): from the sample that showed it
            watch.mismatch_since = watch.sample_t if watch.agreed else watch.command_t
        late = now - watch.mismatch_since >= watch.feedback.within
        watch.no_feedback = late and commanded
        watch.unexpected = late and not commanded
        watch.judged = watch.judged or late

    def _escalation(self, rule: str, watch: _Watch, present: list[tuple[str, str | None]]
                    ) -> Escalation | None:
        short = rule.removeprefix("actions.")
        for escalation in self.escalations:
            if escalation.alarm != short or watch.output.role not in escalation.roles:
                continue
            if escalation.room_type is not None and \
                    not watch.room_types & set(escalation.room_type):
                continue
            if any(room in watch.rooms and any(fnmatch.fnmatchcase(rule_id, pattern)
                                               for pattern in escalation.while_active)
                   for rule_id, room in present):
                return escalation
        return None
