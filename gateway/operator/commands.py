"""OperatorCommands: the one way an operator's command reaches the alarms — from the local
panel (a logged-in user) and from `cmd` (the owner of a trusted key) alike.

Each command runs on the alarm manager, then `after(events)` re-plans the outputs at once (an
acknowledge silences the siren now, not at the next tick) and hands the events on. A command
the alarms refuse raises `Refused(NOT_APPLICABLE, reason)`; a shelve or suppression longer
than MAX_SHELVE_S raises `Refused(TOO_LONG, …)` before anything changes.

`reset_output` releases an output held on until an operator reset (`restore_on_clear: false`,
gateway.actions.planner): journalled (rule `$output`, subject the output, the operator as
actor, with the note) before the outputs are re-planned; an unknown output or one that is not
held is refused; one a real alarm still demands stays on for that alarm, and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from gateway.actions.planner import OutputPlanner
from gateway.alarms.events import AlarmCommandError, AlarmEvent, EventKind
from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.alarms.manager import AlarmManager
from gateway.clock import Clock
from gateway.contract.vocab import MAX_SHELVE_S
from gateway.operator.refusals import NOT_APPLICABLE, TOO_LONG, Refused
from gateway.records import dataclass

if TYPE_CHECKING:  # the command models are pydantic: not imported at rest (issue 15)
    from gateway.contract.commands import AlarmCommand, AlarmRef

MAX_SHELVE_MINUTES = MAX_SHELVE_S / 60


@dataclass(frozen=True, slots=True)
class Released:
    """What `reset_output` did: the output's hold is released; `still_on_for` the alarms that
    keep it on (none: it goes off now)."""

    output: str
    still_on_for: tuple[str, ...]

    @property
    def message(self) -> str:
        if not self.still_on_for:
            return f"output {self.output} released"
        return (f"output {self.output} released from its hold, but stays on while "
                f"{', '.join(self.still_on_for)} demands it")


@dataclass(frozen=True, slots=True)
class Skipped:
    """An alarm `acknowledge_waiting` left alone: it no longer waited for an acknowledgement —
    `acked_by` someone else meanwhile, or `state` normal (cleared and acknowledged, reset) or
    None (no longer known), or shelved, suppressed …"""

    rule: str
    subject: str
    title: str | None
    state: str | None
    acked_by: str | None


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """What `acknowledge_waiting` did: `changed` alarms acknowledged, the others `skipped`."""

    changed: int
    skipped: tuple[Skipped, ...]


class OperatorCommands:
    def __init__(self, alarms: Callable[[], AlarmManager], clock: Clock,
                 after: Callable[[list[AlarmEvent]], None], *,
                 planner: Callable[[], OutputPlanner] | None = None) -> None:
        """`alarms`: the running alarm manager (a config apply replaces it); `after`: called
        with the events of every command carried out; `planner`: the running output planner
        (without one, `reset_output` is refused)."""
        self._alarms = alarms
        self.clock = clock
        self._after = after
        self._planner = planner

    def acknowledge(self, alarms: Sequence[AlarmRef], actor: str, note: str | None) -> int:
        """All or none; returns how many alarms changed state."""
        keys = [AlarmKey(a.rule, a.subject) for a in alarms]
        return self._run(lambda m: m.acknowledge(keys, actor, note))

    def acknowledge_waiting(self, alarms: Sequence[AlarmRef], actor: str,
                            note: str | None) -> Acknowledged:
        """Acknowledge those of `alarms` that still wait for it, skipping (and naming) those
        someone else acknowledged meanwhile — the panel's "acknowledge all" of the alarms its
        operator saw, and its Acknowledge button (a double click, two operators at once)."""
        keys = [AlarmKey(a.rule, a.subject) for a in alarms]
        manager = self._alarms()
        waiting = {v.key for v in manager.active() if v.state.unacknowledged}
        changed = self._run(lambda m: m.acknowledge_waiting(keys, actor, note))
        skipped = []
        for key in dict.fromkeys(keys):
            if key in waiting:
                continue
            try:
                view = manager.get(key)
            except AlarmCommandError:
                skipped.append(Skipped(key.rule, key.subject, None, None, None))
                continue
            skipped.append(Skipped(key.rule, key.subject, view.title, view.state.value,
                                   view.acked_by))
        return Acknowledged(changed, tuple(skipped))

    def reset(self, alarm: AlarmRef, actor: str, note: str | None) -> int:
        """Reset a latched alarm whose condition has cleared (it stays active, its outputs on,
        until then): the acknowledge that returns it to normal, journalled as one. 0: it is
        normal already (someone else reset it); refused while its condition is present."""
        key = AlarmKey(alarm.rule, alarm.subject)
        try:
            view = self._alarms().get(key)
        except AlarmCommandError as exc:
            raise Refused(NOT_APPLICABLE, str(exc)) from exc
        if view.state is AlarmState.NORMAL:
            return 0
        if view.state.overlay:
            raise Refused(NOT_APPLICABLE, f"{key} is {view.state.value.replace('_', ' ')}: "
                                          "nothing to reset")
        if view.condition or view.chattering:
            raise Refused(NOT_APPLICABLE, f"{key}: its condition is still present; it can be "
                                          "reset once it has cleared")
        if not view.state.demands_actions:
            raise Refused(NOT_APPLICABLE, f"{key} is not latched: acknowledge it instead")
        return self.acknowledge([alarm], actor, note)

    def acknowledge_all(self, actor: str, room: str | None, note: str | None) -> int:
        return self._run(lambda m: m.acknowledge_all(actor, room, note))

    def shelve(self, alarm: AlarmRef, actor: str, until_ns: int, reason: str) -> int:
        self._bounded(until_ns, "shelve")
        key = AlarmKey(alarm.rule, alarm.subject)
        return self._run(lambda m: m.shelve(key, actor, until_ns, reason))

    def unshelve(self, alarm: AlarmRef, actor: str) -> int:
        key = AlarmKey(alarm.rule, alarm.subject)
        return self._run(lambda m: m.unshelve(key, actor))

    def suppress(self, scope: str, actor: str, until_ns: int, reason: str) -> int:
        self._bounded(until_ns, "suppression")
        return self._run(lambda m: m.suppress(scope, actor, reason, until_ns))

    def unsuppress(self, scope: str, actor: str) -> int:
        return self._run(lambda m: m.unsuppress(scope, actor))

    def reset_output(self, output: str, actor: str, note: str | None) -> Released:
        """Release an output held on until an operator reset; see the module docstring."""
        planner = self._planner() if self._planner is not None else None
        if planner is None or output not in planner.outputs:
            raise Refused(NOT_APPLICABLE, f"unknown output {output!r}: this gateway has no "
                                          "such output")
        if not planner.state[output].held_by_reset:
            restores = planner.outputs[output].restore_on_clear
            raise Refused(NOT_APPLICABLE, f"output {output} is not held until reset"
                          + (" (it restores on clear: nothing to reset)" if restores else
                             " (nothing to reset: no real alarm has switched it on since "
                             "the last reset)"))
        released = Released(output, tuple(planner.reset(output)))
        words = "reset" if not released.still_on_for else (
            f"reset; stays on while {', '.join(released.still_on_for)} demands it")
        rooms = sorted(r for r in planner.rooms.get(output, set()) if r)
        events = self._alarms().output_event(
            output, held=False, actor=actor, note=f"{words}: {note}" if note else words,
            room=rooms[0] if len(rooms) == 1 else None)
        self._after(events)
        return released

    def until(self, minutes: float) -> int:
        """Wall-clock ns `minutes` from now (the panel gives durations)."""
        return self.clock.now_ns() + int(minutes * 60e9)

    def carry_out(self, cmd: AlarmCommand, actor: str) -> int | Released:
        """A command from `cmd`, in the name of `actor` (the key's owner): the alarms it
        changed, or what a `reset_output` did."""
        # `cmd` is a validated command model, so its module is loaded already: imported here,
        # not at module level, so that a gateway at rest holds no pydantic (issue 15).
        from gateway.contract.commands import (
            Acknowledge,
            AcknowledgeAll,
            ResetOutput,
            Shelve,
            Suppress,
            Unshelve,
            Unsuppress,
        )

        if isinstance(cmd, Acknowledge):
            return self.acknowledge(cmd.alarms, actor, cmd.note)
        if isinstance(cmd, AcknowledgeAll):
            return self.acknowledge_all(actor, cmd.room, cmd.note)
        if isinstance(cmd, Shelve):
            return self.shelve(cmd.alarm, actor, cmd.until, cmd.reason)
        if isinstance(cmd, Unshelve):
            return self.unshelve(cmd.alarm, actor)
        if isinstance(cmd, Suppress):
            return self.suppress(cmd.scope, actor, cmd.until, cmd.reason)
        if isinstance(cmd, Unsuppress):
            return self.unsuppress(cmd.scope, actor)
        if isinstance(cmd, ResetOutput):
            return self.reset_output(cmd.output, actor, cmd.note)
        raise Refused(NOT_APPLICABLE, f"{cmd.action} is not an alarm command")

    def _bounded(self, until_ns: int, what: str) -> None:
        seconds = (until_ns - self.clock.now_ns()) / 1e9
        if seconds > MAX_SHELVE_S + 1:  # a second for the time between issuing and now
            raise Refused(TOO_LONG, f"a {what} of {seconds / 3600:.1f} h is longer than the "
                                    f"limit of {MAX_SHELVE_S / 3600:g} h")

    def _run(self, action: Callable[[AlarmManager], list[AlarmEvent]]) -> int:
        try:
            events = action(self._alarms())
        except AlarmCommandError as exc:
            raise Refused(NOT_APPLICABLE, str(exc)) from exc
        self._after(events)
        return sum(1 for e in events if e.kind is EventKind.ALARM)
