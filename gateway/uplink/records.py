"""The edge's alarm records as wire-contract messages and back: an alarm-manager event
(`AlarmEvent`) as an `AlarmEventMessage`, an alarm view as an `ActiveAlarm`. Kept out of the
contract so that the contract (and the central ingest that imports it) needs no edge module.

The uplink sends them without the models (issue 15: no pydantic in a running gateway):
`event_report` and `alarm_entry` give gateway.contract.alarm_reports' `EventReport` and
`AlarmEntry`, checked as the models check them and encoded to the models' bytes.
`event_message` and `active_alarm` still give the models (from the same fields), for whoever
wants them validated: pydantic is imported then."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.alarms.events import AlarmEvent, AlarmView
from gateway.contract.alarm_reports import AlarmEntry, EventReport
from gateway.contract.points import wire_value

if TYPE_CHECKING:
    from gateway.contract.events import ActiveAlarm, AlarmEventMessage


def _event_fields(event: AlarmEvent, site: str, gateway: str) -> dict[str, Any]:
    return dict(site=site, gateway=gateway, seq=event.seq, ts=event.ts, kind=event.kind,
                rule=event.rule, subject=event.subject, state=event.state,
                previous_state=event.previous_state, value=wire_value(event.value),
                severity=event.severity, actor=event.actor, note=event.note,
                first_out=event.first_out, room=event.room, title=event.title,
                chattering=event.chattering, drill=event.drill,
                clock_synced=event.clock_synced)


def event_report(event: AlarmEvent, *, site: str, gateway: str) -> EventReport:
    """The event as the uplink sends it; `ContractError` if a field breaks the contract."""
    report = EventReport(**_event_fields(event, site, gateway))
    report.wire()  # checked now, as the model was when made
    return report


def event_message(event: AlarmEvent, *, site: str, gateway: str) -> AlarmEventMessage:
    """The event as a validated model; `ContractError` if a field breaks the contract."""
    from gateway.contract.base import validated
    from gateway.contract.events import AlarmEventMessage

    return validated(AlarmEventMessage, **_event_fields(event, site, gateway))


def event_of(message: AlarmEventMessage | EventReport) -> AlarmEvent:
    """The alarm-manager event a message carries (the inverse of `event_message`)."""
    return AlarmEvent(seq=message.seq, ts=message.ts, kind=message.kind, rule=message.rule,
                      subject=message.subject, state=message.state,
                      previous_state=message.previous_state, value=message.value,
                      severity=message.severity, actor=message.actor, note=message.note,
                      first_out=message.first_out, room=message.room, title=message.title,
                      chattering=message.chattering, drill=message.drill,
                      clock_synced=message.clock_synced)


def _view_fields(view: AlarmView) -> dict[str, Any]:
    return dict(rule=view.key.rule, subject=view.key.subject, state=view.state,
                severity=view.severity, title=view.title, room=view.room,
                value=wire_value(view.value), activated=view.activated_ns,
                acked_by=view.acked_by, acked=view.acked_ns, first_out=view.first_out,
                chattering=view.chattering, drill=view.drill)


def alarm_entry(view: AlarmView) -> AlarmEntry:
    """One alarm for the retained `alarms/active` snapshot, as the uplink sends it;
    `ContractError` if a field breaks the contract."""
    entry = AlarmEntry(**_view_fields(view))
    entry.wire()
    return entry


def active_alarm(view: AlarmView) -> ActiveAlarm:
    """One annunciated alarm as a validated model."""
    from gateway.contract.base import validated
    from gateway.contract.events import ActiveAlarm

    return validated(ActiveAlarm, **_view_fields(view))
