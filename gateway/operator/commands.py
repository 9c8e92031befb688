"""OperatorCommands: the one way an operator's command reaches the alarms — from the local
panel (a logged-in user) and from `cmd` (the owner of a trusted key) alike.

Each command runs on the alarm manager, then `after(events)` re-plans the outputs at once (an
acknowledge silences the siren now, not at the next tick) and hands the events on. A command
the alarms refuse raises `Refused(NOT_APPLICABLE, reason)`; a shelve or suppression longer
than MAX_SHELVE_S raises `Refused(TOO_LONG, …)` before anything changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gateway.alarms.events import AlarmCommandError, AlarmEvent, EventKind
from gateway.alarms.lifecycle import AlarmKey
from gateway.alarms.manager import AlarmManager
from gateway.clock import Clock
from gateway.contract.wire import (
    MAX_SHELVE_S,
    Acknowledge,
    AcknowledgeAll,
    AlarmCommand,
    AlarmRef,
    Shelve,
    Suppress,
    Unshelve,
    Unsuppress,
)
from gateway.operator.refusals import NOT_APPLICABLE, TOO_LONG, Refused

MAX_SHELVE_MINUTES = MAX_SHELVE_S / 60


class OperatorCommands:
    def __init__(self, alarms: Callable[[], AlarmManager], clock: Clock,
                 after: Callable[[list[AlarmEvent]], None]) -> None:
        """`alarms`: the running alarm manager (a config apply replaces it); `after`: called
        with the events of every command carried out."""
        self._alarms = alarms
        self.clock = clock
        self._after = after

    def acknowledge(self, alarms: Sequence[AlarmRef], actor: str, note: str | None) -> int:
        """All or none; returns how many alarms changed state."""
        keys = [AlarmKey(a.rule, a.subject) for a in alarms]
        return self._run(lambda m: m.acknowledge(keys, actor, note))

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

    def until(self, minutes: float) -> int:
        """Wall-clock ns `minutes` from now (the panel gives durations)."""
        return self.clock.now_ns() + int(minutes * 60e9)

    def carry_out(self, cmd: AlarmCommand, actor: str) -> int:
        """A command from `cmd`, in the name of `actor` (the key's owner)."""
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
