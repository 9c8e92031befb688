"""An active alarm regraded: its rule's evaluation now carries another severity or other output
roles while the alarm stays active — an output supervision's escalation (a dead exhaust fan
with hydrogen present turns its alarm critical and asks for the siren), or a config applied
with another severity. `AlarmManager` journals it with the new severity and, for an
escalation, annunciates the alarm afresh if it had been acknowledged (gateway.alarms.manager).
Pure."""

from __future__ import annotations

from gateway.alarms.lifecycle import AUDIBLE_ROLES
from gateway.alarms.types import Evaluation


def regraded(before: Evaluation, now: Evaluation) -> bool:
    """`now` changes the severity or the output roles `before` asked for."""
    return now.severity is not before.severity or now.actions != before.actions


def escalation(before: Evaluation, now: Evaluation) -> tuple[bool, str]:
    """(an escalation — a higher severity, or a sounder `before` did not ask for —, the
    event's note)."""
    sounders = sorted((set(now.actions) - set(before.actions)) & AUDIBLE_ROLES)
    raised = now.severity.level < before.severity.level or bool(sounders)
    what = (f"{before.severity} -> {now.severity}" if now.severity is not before.severity
            else "asks for " + ", ".join(sounders or sorted(now.actions) or ["nothing"]))
    return raised, f"{'escalated' if raised else 'de-escalated'}: {what}"
