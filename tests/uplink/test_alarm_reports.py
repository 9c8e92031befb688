"""The gateway's alarm messages without pydantic (gateway.contract.alarm_reports, issue 15): for
any input — every field present or absent, unicode, large integers, floats of every kind, and
values the contract refuses — `EventReport` and `SnapshotReport` (of `AlarmEntry`) give exactly
the bytes of `encode(<the model>)`, which `decode` reads back as that model, and refuse
(ContractError) exactly what `AlarmEventMessage` and `ActiveAlarmsSnapshot` refuse. The
dataclasses have the models' fields, in their order and with their defaults."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from gateway.contract import wire as c
from gateway.contract.alarm_reports import AlarmEntry, EventReport, SnapshotReport
from tests.uplink.test_outbound import (
    bad_ids,
    bad_ns,
    bad_positives,
    fields_of,
    good_ids,
    good_ns,
    good_positives,
    odd_text,
    one_bad,
    optional,
    outcome,
)

good_values = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(
    allow_nan=False, allow_infinity=False) | st.text(max_size=200) | st.sampled_from(
    [1e-6, 1.5e-5, 1e16, -0.0, "x" * 200, "é😀\u2028\x00"])
bad_values = st.sampled_from([float("nan"), float("inf"), "x" * 201, "\ud800", b"b", [1],
                              {"a": 1}, 1j])


def texts(low: int, high: int) -> st.SearchStrategy[str]:
    return st.text(min_size=low, max_size=high) | st.just("t" * high)


def bad_texts(low: int, high: int) -> st.SearchStrategy[Any]:
    return st.sampled_from(["t" * (high + 1), "\ud800", 5, None, b"x"]
                           + ([""] if low else []))


good_bools = st.booleans()
bad_bools = st.sampled_from([0, 1, "true", None, 1.0])
bad_enum = st.sampled_from(["normal", "critical", "alarm", None, 1])

entries = st.builds(
    AlarmEntry, rule=texts(1, 128), subject=texts(1, 200), state=st.sampled_from(c.AlarmState),
    severity=st.sampled_from(c.Severity), title=texts(0, 200), room=optional(good_ids),
    value=good_values, activated=optional(good_ns), acked_by=optional(texts(1, 64)),
    acked=optional(good_ns), first_out=good_bools, chattering=good_bools, drill=good_bools)
BAD_ENTRY: dict[str, st.SearchStrategy[Any]] = {
    "rule": bad_texts(1, 128), "subject": bad_texts(1, 200), "state": bad_enum,
    "severity": bad_enum, "title": bad_texts(0, 200).filter(lambda v: v is not None),
    "room": bad_ids.filter(lambda v: v is not None), "value": bad_values,
    "activated": bad_ns.filter(lambda v: v is not None),
    "acked_by": bad_texts(1, 64).filter(lambda v: v is not None),
    "acked": bad_ns.filter(lambda v: v is not None), "first_out": bad_bools,
    "chattering": bad_bools, "drill": bad_bools}
snapshots = st.builds(SnapshotReport, site=good_ids, gateway=good_ids, ts=good_ns,
                      seq=good_ns, alarms=st.lists(entries, max_size=3).map(tuple),
                      omitted=optional(good_positives))
BAD_SNAPSHOT: dict[str, st.SearchStrategy[Any]] = {
    "site": bad_ids, "gateway": bad_ids, "ts": bad_ns, "seq": bad_ns,
    "omitted": bad_positives,
    "alarms": st.lists(entries, min_size=1, max_size=2).flatmap(
        lambda es: one_bad(es[0], BAD_ENTRY).map(lambda e: (e, *es[1:])))}
numbers = st.just((None, None)) | st.tuples(good_positives, good_positives)
events = numbers.flatmap(lambda n: st.builds(
    EventReport, site=good_ids, gateway=good_ids, stream=st.just(n[0]), dseq=st.just(n[1]),
    seq=good_ns, ts=good_ns, kind=st.sampled_from(c.EventKind), rule=texts(1, 128),
    subject=texts(1, 200), state=st.sampled_from(c.AlarmState),
    previous_state=st.sampled_from(c.AlarmState), value=good_values,
    severity=optional(st.sampled_from(c.Severity)), actor=texts(1, 64),
    note=optional(texts(0, 1000)), first_out=good_bools, room=optional(good_ids),
    title=texts(0, 200), chattering=good_bools, drill=good_bools,
    clock_synced=optional(good_bools)))
BAD_EVENT: dict[str, st.SearchStrategy[Any]] = {
    "site": bad_ids, "gateway": bad_ids, "stream": bad_positives, "dseq": bad_positives,
    "seq": bad_ns, "ts": bad_ns, "kind": bad_enum, "rule": bad_texts(1, 128),
    "subject": bad_texts(1, 200), "state": bad_enum, "previous_state": bad_enum,
    "value": bad_values, "severity": bad_enum.filter(lambda v: v is not None),
    "actor": bad_texts(1, 64), "note": bad_texts(0, 1000).filter(lambda v: v is not None),
    "first_out": bad_bools, "room": bad_ids.filter(lambda v: v is not None),
    "title": bad_texts(0, 200), "chattering": bad_bools, "drill": bad_bools,
    "clock_synced": bad_bools.filter(lambda v: v is not None)}


def snapshot_model(report: SnapshotReport) -> c.ActiveAlarmsSnapshot:
    given_ = fields_of(report)
    given_["alarms"] = tuple(c.ActiveAlarm(**fields_of(a)) for a in report.alarms)
    return c.ActiveAlarmsSnapshot(**given_)


def event_model(report: EventReport) -> c.AlarmEventMessage:
    return c.AlarmEventMessage(**fields_of(report))


def read_back(channel: c.Channel, report: Any, model: c.Message) -> None:
    data = report.encode()
    assert data == c.encode(model)
    decoded = c.decode(str(c.Topic(report.site, report.gateway, channel)), data)
    assert decoded == model and c.encode(decoded) == data


@settings(max_examples=400)
@given(report=snapshots)
def test_a_snapshot_report_is_the_active_alarms_snapshots_bytes(report: SnapshotReport
                                                                ) -> None:
    read_back(c.Channel.ALARMS_ACTIVE, report, snapshot_model(report))


@settings(max_examples=400)
@given(report=events)
def test_an_event_report_is_the_alarm_event_messages_bytes(report: EventReport) -> None:
    read_back(c.Channel.ALARMS, report, event_model(report))
    if report.stream is None:  # numbered by the writer: the model's copy's bytes
        numbered = report.numbered(7, 9)
        assert numbered.encode() == c.encode(
            event_model(report).model_copy(update={"stream": 7, "dseq": 9}))


BROKEN: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], BaseModel]]] = {
    "snapshot": (snapshots.flatmap(lambda r: one_bad(r, BAD_SNAPSHOT)), snapshot_model),
    "event": (events.flatmap(lambda r: one_bad(r, BAD_EVENT)), event_model)}


@pytest.mark.parametrize("kind", sorted(BROKEN))
@settings(max_examples=400)
@given(data=st.data())
def test_a_report_refuses_what_its_model_refuses(kind: str, data: st.DataObject) -> None:
    broken, model = BROKEN[kind]
    report = data.draw(broken)
    with pytest.raises(ValidationError):
        model(report)
    with pytest.raises(c.ContractError):
        report.encode()


mixed_entries = st.builds(
    AlarmEntry, rule=texts(0, 130) | odd_text, subject=texts(1, 200) | odd_text,
    state=st.sampled_from([*c.AlarmState, "normal"]), severity=st.sampled_from(c.Severity),
    title=texts(0, 201), value=good_values | bad_values | st.floats(),
    activated=optional(good_ns | bad_ns), first_out=good_bools | bad_bools)


@settings(max_examples=400)
@given(report=st.builds(SnapshotReport, site=good_ids | bad_ids | odd_text, gateway=good_ids,
                        ts=good_ns | bad_ns, seq=good_ns,
                        alarms=st.lists(mixed_entries, max_size=3).map(tuple),
                        omitted=optional(good_positives | bad_positives)))
def test_a_snapshot_report_and_the_model_agree_on_any_mix(report: SnapshotReport) -> None:
    assert outcome(report.encode) == outcome(lambda: c.encode(snapshot_model(report)))


def test_a_snapshot_beyond_the_limit_and_unpaired_numbers_are_refused_by_both() -> None:
    entry = AlarmEntry("r", "s", c.AlarmState.SHELVED, c.Severity.MINOR, "t")
    big = SnapshotReport("s1", "g1", 1, 1, (entry,) * (c.MAX_ACTIVE_ALARMS + 1))
    assert outcome(big.encode) is None and outcome(lambda: c.encode(snapshot_model(big))) is None
    event = EventReport(site="s", gateway="g", stream=1, seq=1, ts=1, kind=c.EventKind.ALARM,
                        rule="r", subject="s", state=c.AlarmState.NORMAL,
                        previous_state=c.AlarmState.NORMAL, actor="a", title="t")
    assert outcome(event.encode) is None
    assert outcome(lambda: c.encode(event_model(event))) is None


@pytest.mark.parametrize(("ours", "model"), [
    (EventReport, c.AlarmEventMessage), (SnapshotReport, c.ActiveAlarmsSnapshot),
    (AlarmEntry, c.ActiveAlarm)])
def test_the_dataclasses_have_the_models_fields_in_their_order(
        ours: type[Any], model: type[BaseModel]) -> None:
    assert [f.name for f in dataclasses.fields(ours)] == [
        name for name in model.model_fields if name != "v"]
    for f in dataclasses.fields(ours):
        default = model.model_fields[f.name].default
        if f.default is not dataclasses.MISSING:
            assert f.default == default, f.name
        else:
            assert model.model_fields[f.name].is_required(), f.name
