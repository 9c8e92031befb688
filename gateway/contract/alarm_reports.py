"""The alarm messages a gateway produces, without pydantic (issue 15): its alarm events
(`EventReport`, `AlarmEventMessage` without the model) and the retained active-alarm snapshot
(`SnapshotReport` of `AlarmEntry`: `ActiveAlarmsSnapshot` of `ActiveAlarm`), plain frozen
dataclasses that write their own bytes, as gateway.contract.outbound's state and catalog do.

The models stay the wire's single source of truth (the ingest decodes with them); each
`encode()` gives exactly `encode(<the model>)`'s bytes — the model's fields in its order, nulls
left out, enums as their values, through gateway.contract.jsontext — and `wire()` refuses what
the model refuses, with `ContractError`: each field checked by hand against the same rules
(gateway.contract.vocab). tests/uplink/test_alarm_reports.py shows both with hypothesis against
the models, and that the fields and their order are the models'.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from gateway.contract.channels import Channel
from gateway.contract.enums import AlarmState, EventKind, Severity
from gateway.contract.outbound import dumped, ns, positive, put
from gateway.contract.sample import Value
from gateway.contract.vocab import (
    ID,
    MAX_ACTIVE_ALARMS,
    TEXT_VALUE,
    VERSION,
    ContractError,
    TextRule,
)
from gateway.records import dataclass

ALARM_RULE = TextRule(128, min_length=1)
"""`AlarmRule`."""
ALARM_SUBJECT = TextRule(200, min_length=1)
"""`AlarmSubject`."""
ACTOR = TextRule(64, min_length=1)
"""`Actor`."""
TEXT = TextRule(200)
"""`Text` (a title)."""
LONG_TEXT = TextRule(1000)
"""`LongText` (a note)."""


def check_value(what: str, value: object) -> object:
    """A sample value the wire's `Value` takes: a finite float, an int, a bool, a string of at
    most 200 characters (None is left out before)."""
    kind = type(value)
    if kind is float:
        if value - value != 0.0:  # type: ignore[operator]
            raise ContractError(f"{what}: {value!r} is not finite")
        return value
    if kind is int or kind is bool:
        return value
    if kind is str:
        return TEXT_VALUE.check(what, value)
    raise ContractError(f"{what}: a {kind.__name__} is not a sample value")


def check_bool(what: str, value: object) -> bool:
    if type(value) is not bool:
        raise ContractError(f"{what}: {value!r:.40} is not a boolean")
    return value


def _enum(what: str, value: object, kind: type[AlarmState | EventKind | Severity]) -> str:
    if type(value) is not kind:  # (a strict enum field takes its members only)
        raise ContractError(f"{what}: {value!r:.40} is not a {kind.__name__}")
    return value.value


@dataclass(frozen=True, slots=True)
class AlarmEntry:
    """`ActiveAlarm` without the model: one alarm that is not normal."""

    rule: str
    subject: str
    state: AlarmState
    severity: Severity
    title: str
    room: str | None = None
    value: Value = None
    activated: int | None = None
    acked_by: str | None = None
    acked: int | None = None
    first_out: bool = False
    chattering: bool = False
    drill: bool = False

    def wire(self) -> dict[str, object]:
        out: dict[str, object] = {
            "rule": ALARM_RULE.check("rule", self.rule),
            "subject": ALARM_SUBJECT.check("subject", self.subject),
            "state": _enum("state", self.state, AlarmState),
            "severity": _enum("severity", self.severity, Severity),
            "title": TEXT.check("title", self.title)}
        put(out, "room", self.room, ID.check)
        put(out, "value", self.value, check_value)
        put(out, "activated", self.activated, ns)
        put(out, "acked_by", self.acked_by, ACTOR.check)
        put(out, "acked", self.acked, ns)
        out["first_out"] = check_bool("first_out", self.first_out)
        out["chattering"] = check_bool("chattering", self.chattering)
        out["drill"] = check_bool("drill", self.drill)
        return out


@dataclass(frozen=True, slots=True)
class SnapshotReport:
    """`ActiveAlarmsSnapshot` without the model: the retained active-alarm snapshot."""

    channel: ClassVar[Channel] = Channel.ALARMS_ACTIVE

    site: str
    gateway: str
    ts: int
    seq: int
    alarms: tuple[AlarmEntry, ...] = ()
    omitted: int | None = None

    def wire(self) -> dict[str, object]:
        if len(self.alarms) > MAX_ACTIVE_ALARMS:
            raise ContractError(f"alarms: {len(self.alarms)}, more than {MAX_ACTIVE_ALARMS}")
        alarms = []
        for n, alarm in enumerate(self.alarms):
            if type(alarm) is not AlarmEntry:
                raise ContractError(f"alarms.{n}: {alarm!r:.40} is not an alarm")
            try:
                alarms.append(alarm.wire())
            except ContractError as exc:
                raise ContractError(f"alarms.{n}.{exc}") from None
        out: dict[str, object] = {
            "v": VERSION, "site": ID.check("site", self.site),
            "gateway": ID.check("gateway", self.gateway), "ts": ns("ts", self.ts),
            "seq": ns("seq", self.seq), "alarms": alarms}
        put(out, "omitted", self.omitted, positive)
        return out

    def encode(self) -> bytes:
        return dumped(self.wire())


@dataclass(frozen=True, slots=True, kw_only=True)
class EventReport:
    """`AlarmEventMessage` without the model: one alarm-manager event as journalled."""

    channel: ClassVar[Channel] = Channel.ALARMS

    site: str
    gateway: str
    stream: int | None = None
    dseq: int | None = None
    seq: int
    ts: int
    kind: EventKind
    rule: str
    subject: str
    state: AlarmState
    previous_state: AlarmState
    value: Value = None
    severity: Severity | None = None
    actor: str
    note: str | None = None
    first_out: bool = False
    room: str | None = None
    title: str
    chattering: bool = False
    drill: bool = False
    clock_synced: bool | None = None

    def numbered(self, stream: int, dseq: int) -> EventReport:
        """This event with its delivery numbers (copied in as given, as `model_copy` did)."""
        return dataclasses.replace(self, stream=stream, dseq=dseq)

    def wire(self) -> dict[str, object]:
        out: dict[str, object] = {"v": VERSION, "site": ID.check("site", self.site),
                                  "gateway": ID.check("gateway", self.gateway)}
        if (self.stream is None) != (self.dseq is None):
            raise ContractError("stream and dseq go together")
        put(out, "stream", self.stream, positive)
        put(out, "dseq", self.dseq, positive)
        out["seq"] = ns("seq", self.seq)
        out["ts"] = ns("ts", self.ts)
        out["kind"] = _enum("kind", self.kind, EventKind)
        out["rule"] = ALARM_RULE.check("rule", self.rule)
        out["subject"] = ALARM_SUBJECT.check("subject", self.subject)
        out["state"] = _enum("state", self.state, AlarmState)
        out["previous_state"] = _enum("previous_state", self.previous_state, AlarmState)
        put(out, "value", self.value, check_value)
        if self.severity is not None:
            out["severity"] = _enum("severity", self.severity, Severity)
        out["actor"] = ACTOR.check("actor", self.actor)
        put(out, "note", self.note, LONG_TEXT.check)
        out["first_out"] = check_bool("first_out", self.first_out)
        put(out, "room", self.room, ID.check)
        out["title"] = TEXT.check("title", self.title)
        out["chattering"] = check_bool("chattering", self.chattering)
        out["drill"] = check_bool("drill", self.drill)
        put(out, "clock_synced", self.clock_synced, check_bool)
        return out

    def encode(self) -> bytes:
        return dumped(self.wire())

