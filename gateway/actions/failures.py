"""`actions.output_failure`: the safety core's alarm on an output the gateway cannot switch.

Two causes, one alarm per output id (major, no outputs of its own), evaluated at every round:

- a write to the output's coil failed (gateway.actions.driver: no reply, a read-back that
  disagrees, its module offline, no bus loop for it — `output unreachable: …`);
- a coil the output drove under an earlier config, released by a config apply that moved or
  dropped the output (gateway.actions.release), is not confirmed off after its first try, or
  no bus of the running config reaches its line: the relay may still be energised with no
  owner. The alarm names the coil and why; it clears when the release is confirmed or a
  config drives the coil again. An output the running config no longer has keeps its alarm
  through this path alone (`released`): the title and room are those of the config that
  released it, and once its release is gone it is evaluated inactive.

Being the alarm every failing output raises, it reaches the panel, `roomwarden status`, the
journal and the uplink (central monitoring) the same way, and a config on trial holds it as
any `actions.*` alarm (gateway.flashing.trial).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from gateway.actions.orphans import Orphan
from gateway.alarms.events import AlarmView
from gateway.alarms.types import Evaluation, Severity
from gateway.config.outputs import Output

OUTPUT_FAILURE_RULE = "actions.output_failure"


class OutputFailures:
    """The `actions.output_failure` evaluations of one config's outputs (`evaluate`)."""

    def __init__(self, outputs: Mapping[str, Output], rooms: Mapping[str, set[str]]) -> None:
        self.outputs = outputs
        self.rooms = rooms
        """Output id → the rooms it serves (the output planner's)."""
        self.released: dict[str, Evaluation] = {}
        """Outputs this config does not have whose alarm is up for a release: evaluated
        inactive once the release is confirmed or dropped."""

    def remember(self, alarms: Iterable[AlarmView]) -> None:
        """Take on the release alarms already up of outputs this config does not have —
        restored from the journal at a start, carried by a config apply — so that they clear
        when their release does (`gateway.safety`: neither retired while the journal keeps
        their release, nor left up for ever)."""
        for view in alarms:
            rule, subject = view.key
            if rule == OUTPUT_FAILURE_RULE and view.condition and subject not in self.outputs:
                self.released.setdefault(subject, Evaluation(
                    rule=rule, subject=subject, active=True, value=view.value,
                    severity=view.severity, ts=0, title=view.title, room=view.room))

    def evaluate(self, failed: Mapping[str, str | None], now_ns: int,
                 released: Iterable[Orphan] = ()) -> list[Evaluation]:
        """`failed`: output id → why its last write failed, or None; `released`: the coil
        releases pending (`CoilReleases.pending`) — those with an `error` raise the alarm; one
        not yet tried keeps an alarm already up from clearing (a restart, an apply)."""
        releases: dict[str, list[Orphan]] = {}
        pending: set[str] = set()
        for orphan in released:
            pending.add(orphan.driven.output.id)
            if orphan.error is not None:
                releases.setdefault(orphan.driven.output.id, []).append(orphan)
        evaluations = []
        for output_id, error in failed.items():
            why = [error] if error is not None else []
            why += [_why(orphan) for orphan in releases.pop(output_id, ())]
            evaluations.append(self._failure(self.outputs[output_id], why, now_ns))
        for output_id, orphans in releases.items():
            output = self.outputs.get(output_id)
            ev = self._failure(output or orphans[0].driven.output,
                               [_why(orphan) for orphan in orphans], now_ns,
                               None if output is not None else orphans[0].driven.rooms)
            evaluations.append(ev)
            if output is None:
                self.released[output_id] = ev
        for output_id in [o for o in self.released if o not in pending]:
            ev = self.released.pop(output_id)
            if output_id not in self.outputs and output_id not in failed:
                evaluations.append(dataclasses.replace(ev, active=False, value=None,
                                                       ts=now_ns))
        return evaluations

    def _failure(self, output: Output, why: list[str], now_ns: int,
                 rooms: Iterable[str] | None = None) -> Evaluation:
        served = sorted(r for r in (rooms if rooms is not None
                                    else self.rooms.get(output.id, set())) if r)
        return Evaluation(
            rule=OUTPUT_FAILURE_RULE, subject=output.id, active=bool(why),
            value="; ".join(why) if why else None, severity=Severity.MAJOR, ts=now_ns,
            title=f"Alarm output {output.id} ({output.role}) does not respond",
            room=served[0] if served else None)


def _why(orphan: Orphan) -> str:
    return (f"{orphan.name}, released by config v{orphan.version}, not confirmed off: "
            f"{orphan.error}")
