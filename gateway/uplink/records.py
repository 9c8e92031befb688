"""The edge's alarm records as wire-contract messages and back: an alarm-manager event
(`AlarmEvent`) as an `AlarmEventMessage`, an alarm view as an `ActiveAlarm`. Kept out of the
contract so that the contract (and the central ingest that imports it) needs no edge module."""

from __future__ import annotations

from gateway.alarms.events import AlarmEvent, AlarmView
from gateway.contract.wire import ActiveAlarm, AlarmEventMessage, validated, wire_value


def event_message(event: AlarmEvent, *, site: str, gateway: str) -> AlarmEventMessage:
    """The event as it goes on the wire; `ContractError` if a field breaks the contract."""
    return validated(AlarmEventMessage, site=site, gateway=gateway, seq=event.seq, ts=event.ts,
                     kind=event.kind, rule=event.rule, subject=event.subject, state=event.state,
                     previous_state=event.previous_state, value=wire_value(event.value),
                     severity=event.severity, actor=event.actor, note=event.note,
                     first_out=event.first_out, room=event.room, title=event.title,
                     chattering=event.chattering, drill=event.drill,
                     clock_synced=event.clock_synced)


def event_of(message: AlarmEventMessage) -> AlarmEvent:
    """The alarm-manager event a message carries (the inverse of `event_message`)."""
    return AlarmEvent(seq=message.seq, ts=message.ts, kind=message.kind, rule=message.rule,
                      subject=message.subject, state=message.state,
                      previous_state=message.previous_state, value=message.value,
                      severity=message.severity, actor=message.actor, note=message.note,
                      first_out=message.first_out, room=message.room, title=message.title,
                      chattering=message.chattering, drill=message.drill,
                      clock_synced=message.clock_synced)


def active_alarm(view: AlarmView) -> ActiveAlarm:
    """One annunciated alarm for the retained `alarms/active` snapshot."""
    return validated(ActiveAlarm, rule=view.key.rule, subject=view.key.subject,
                     state=view.state, severity=view.severity, title=view.title,
                     room=view.room, value=wire_value(view.value),
                     activated=view.activated_ns, acked_by=view.acked_by, acked=view.acked_ns,
                     first_out=view.first_out, chattering=view.chattering,
                     drill=view.drill)
