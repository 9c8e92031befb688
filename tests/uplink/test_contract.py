from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alarms.events import AlarmEvent, EventKind
from gateway.alarms.lifecycle import AlarmState
from gateway.alarms.types import Severity
from gateway.contract import wire as c
from gateway.field.sample import Quality, Sample
from gateway.uplink.examples import examples, markdown
from gateway.uplink.records import event_message, event_of
from tests.uplink import strategies as s

DOC = Path(__file__).resolve().parents[2] / "docs" / "mqtt-contract.md"


def topic_for(message: c.Message, site: str = "s1", gateway: str = "g1") -> c.Topic:
    site = getattr(message, "site", None) or site  # a command may name none either
    gateway = getattr(message, "gateway", None) or gateway  # a command may name none
    return c.Topic(site, gateway, c.channel_of(message))


# ------------------------------------------------------------------ topics

def test_topic_render_and_parse() -> None:
    t = c.Topic("bj-yizhuang-idc", "gw-01", c.Channel.ALARMS_ACTIVE)
    assert str(t) == "roomwarden/bj-yizhuang-idc/gw-01/alarms/active"
    assert c.Topic.parse(str(t)) == t
    custom = c.Topic("s", "g", c.Channel.CONFIG_STATUS, root="acme/rw")
    assert str(custom) == "acme/rw/s/g/config/status"
    assert c.Topic.parse("acme/rw/s/g/config/status", root="acme/rw") == custom
    assert t.spec.retain and t.spec.qos == 1
    assert not c.Topic("s", "g", c.Channel.TELEMETRY).spec.retain


@pytest.mark.parametrize("topic", [
    "roomwarden/s/g", "roomwarden/s/g/", "roomwarden//g/state", "roomwarden/s//state",
    "roomwarden/s/g/nope", "roomwarden/s/g/alarms/active/x", "other/s/g/state",
    "roomwarden/+/g/state", "roomwarden/s/#", "roomwarden/s/g/state/", "roomwarden/$s/g/state",
    "roomwarden/s p/g/state", "roomwarden/s/g\x00/state", "", "/roomwarden/s/g/state",
    "roomwarden/" + "x" * 65 + "/g/state", "roomwardenx/s/g/state",
])
def test_malformed_topics_are_rejected(topic: str) -> None:
    with pytest.raises(c.ContractError):
        c.Topic.parse(topic)


@pytest.mark.parametrize("bad", ["+", "#", "a/b", "", "$sys", "a+b", "a#", "x" * 65, " a"])
def test_ids_with_wildcards_or_separators_are_rejected(bad: str) -> None:
    with pytest.raises(c.ContractError):
        c.Topic(bad, "g", c.Channel.STATE)
    with pytest.raises(c.ContractError):
        c.Topic("s", bad, c.Channel.STATE)
    if bad != "+":  # "+" is the wildcard a filter may use
        with pytest.raises(c.ContractError):
            c.topic_filter(c.Channel.STATE, site=bad)


@pytest.mark.parametrize("root", ["", "a//b", "a/+", "#", "/a", "a/"])
def test_bad_roots_are_rejected(root: str) -> None:
    with pytest.raises(c.ContractError):
        c.Topic("s", "g", c.Channel.STATE, root=root)


def test_subscription_filters() -> None:
    assert c.topic_filter(c.Channel.TELEMETRY) == "roomwarden/+/+/telemetry"
    assert c.topic_filter(c.Channel.CMD, site="s", gateway="g") == "roomwarden/s/g/cmd"


@given(s.ids, s.ids, st.sampled_from(c.Channel))
def test_topic_round_trip(site: str, gateway: str, channel: c.Channel) -> None:
    t = c.Topic(site, gateway, channel)
    assert c.Topic.parse(str(t)) == t


# ------------------------------------------------------------------ payloads

@pytest.mark.slow
@settings(max_examples=300)
@given(s.messages)
def test_encode_decode_is_identity(message: c.Message) -> None:
    assert c.decode(str(topic_for(message)), c.encode(message)) == message


@pytest.mark.slow
@given(s.samples())
def test_telemetry_rows_keep_samples(samples: list[Sample]) -> None:
    batch = c.TelemetryBatch.from_samples(site="s", gateway="g", seq=1, produced=0,
                                          samples=samples)
    back = c.decode("roomwarden/s/g/telemetry", c.encode(batch))
    assert isinstance(back, c.TelemetryBatch)
    assert back.to_samples() == samples


def test_non_finite_values_travel_as_null() -> None:
    batch = c.TelemetryBatch.from_samples(site="s", gateway="g", seq=1, produced=0, samples=[
        Sample("d.p", float("nan"), 5, Quality.INVALID),
        Sample("d.q", float("-inf"), 7, Quality.INVALID)])
    assert [r[1] for r in batch.samples] == [None, None]
    assert b"NaN" not in c.encode(batch)


def test_alarm_event_round_trip_from_the_manager_type() -> None:
    event = AlarmEvent(seq=7, ts=10, kind=EventKind.ALARM, rule="explosion.h2_alarm",
                       subject="h2-1.h2", state=AlarmState.ACTIVE_UNACKNOWLEDGED,
                       previous_state=AlarmState.NORMAL, value=27.5,
                       severity=Severity.CRITICAL, actor="system", note=None, first_out=True,
                       room="battery-1", title="H2", chattering=False)
    msg = event_message(event, site="s", gateway="g")
    decoded = c.decode("roomwarden/s/g/alarms", c.encode(msg))
    assert isinstance(decoded, c.AlarmEventMessage)
    assert event_of(decoded) == event
    wire = json.loads(c.encode(msg))
    assert {k: v for k, v in event.as_dict().items() if v is not None} == {
        k: v for k, v in wire.items() if k not in ("v", "site", "gateway")}


def valid_payload(channel: c.Channel) -> dict[str, Any]:
    for _title, message in examples():
        if c.channel_of(message) is channel:
            return dict(json.loads(c.encode(message)))
    raise AssertionError(channel)


@pytest.mark.parametrize(("channel", "change", "reason"), [
    (c.Channel.TELEMETRY, {"v": 2}, "v"),
    (c.Channel.TELEMETRY, {"extra": 1}, "extra"),
    (c.Channel.TELEMETRY, {"seq": "12"}, "seq"),
    (c.Channel.TELEMETRY, {"seq": -1}, "seq"),
    (c.Channel.TELEMETRY, {"samples": []}, "samples"),
    (c.Channel.TELEMETRY, {"samples": [["a.b", 1e400, 0, "good"]]}, "samples"),
    (c.Channel.TELEMETRY, {"samples": [["a.b", 1, 0, "great"]]}, "samples"),
    (c.Channel.TELEMETRY, {"samples": [["a/b", 1, 0, "good"]]}, "samples"),
    (c.Channel.TELEMETRY, {"samples": [["a.b", 1, 0]]}, "samples"),
    (c.Channel.TELEMETRY, {"samples": [["a.b", "x" * 201, 0, "good"]]}, "samples"),
    (c.Channel.TELEMETRY, {"site": "other"}, "names"),
    (c.Channel.META, {"catalog": "0" * 16}, "hash"),
    (c.Channel.STATE, {"status": "maybe"}, "status"),
    (c.Channel.STATE, {"dropped": {"video": 1}}, "dropped"),
    (c.Channel.ALARMS, {"state": "exploded"}, "state"),
    (c.Channel.CMD, {"action": "reboot"}, "action"),
    (c.Channel.CMD, {"alarms": []}, "alarms"),
    (c.Channel.CONFIG_SET, {"config": "tampered"}, "sha256"),
])
def test_bad_payloads_name_the_reason(channel: c.Channel, change: dict[str, Any],
                                      reason: str) -> None:
    payload = {**valid_payload(channel), **change}
    topic = c.Topic("bj-yizhuang-idc", "gw-bj-yz-01", channel)
    with pytest.raises(c.ContractError, match=reason):
        c.decode(str(topic), json.dumps(payload).encode())


def test_size_limits() -> None:
    topic = "roomwarden/s/g/telemetry"
    with pytest.raises(c.ContractError, match="exceeds"):
        c.decode(topic, b" " * (c.MAX_PAYLOAD_BYTES + 1))
    rows = [Sample(f"d.p{i}", 1.0, i, Quality.GOOD) for i in range(c.MAX_BATCH_ROWS + 1)]
    with pytest.raises(c.ContractError, match="samples"):
        c.TelemetryBatch.from_samples(site="s", gateway="g", seq=1, produced=0, samples=rows)


@settings(max_examples=300)
@given(st.sampled_from(c.Channel), st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_contract_error(channel: c.Channel, payload: bytes) -> None:
    with contextlib.suppress(c.ContractError):
        c.decode(str(c.Topic("s", "g", channel)), payload)


@pytest.mark.slow
@settings(max_examples=300)
@given(st.sampled_from(c.Channel), s.json_values)
def test_arbitrary_json_only_raises_contract_error(channel: c.Channel, value: Any) -> None:
    with contextlib.suppress(c.ContractError):
        c.decode(str(c.Topic("s", "g", channel)), s.dumps(value))


@pytest.mark.slow
@settings(max_examples=300)
@given(st.sampled_from(c.Channel), st.data())
def test_mutated_valid_payloads_only_raise_contract_error(channel: c.Channel,
                                                          data: st.DataObject) -> None:
    payload = valid_payload(channel)
    key = data.draw(st.sampled_from(sorted(payload)))
    payload[key] = data.draw(s.json_values)
    with contextlib.suppress(c.ContractError):
        c.decode(str(c.Topic("bj-yizhuang-idc", "gw-bj-yz-01", channel)),
                 json.dumps(payload).encode())


@given(st.text(max_size=80), st.binary(max_size=50))
def test_arbitrary_topics_only_raise_contract_error(topic: str, payload: bytes) -> None:
    with contextlib.suppress(c.ContractError):
        c.decode(topic, payload)


def test_unencodable_strings_never_make_a_message() -> None:
    with pytest.raises(ValueError, match="unicode"):
        c.CommandResult(site="s", gateway="g", id="r", ts=0, ok=False, error="\ud800")


# ------------------------------------------------------------------ the document

def doc_examples() -> list[tuple[str, bytes]]:
    text = DOC.read_text()
    found = re.findall(r"Topic `([^`]+)`[^\n]*\n\n```json\n(.*?)\n```", text, re.S)
    return [(topic, body.encode()) for topic, body in found]


def test_every_example_in_the_document_decodes() -> None:
    found = doc_examples()
    assert len(found) == len(examples())
    assert {type(m) for _t, m in examples()} == {
        c.TelemetryBatch, c.PointCatalog, c.AlarmEventMessage, c.ActiveAlarmsSnapshot,
        c.GatewayState, c.ConfigSet, c.ConfigStatus, c.CommandResult, *c.COMMAND_TYPES,
        c.DeliveryAck, c.IncidentChunk}  # IncidentChunk: issue 12
    for (topic, body), (_title, message) in zip(found, examples(), strict=True):
        assert c.decode(topic, body) == message


def test_document_shows_the_current_examples() -> None:
    text = DOC.read_text()
    section = text.split("<!-- examples:begin -->\n")[1].split("<!-- examples:end -->")[0]
    assert section == markdown(), "regenerate: python -m gateway.uplink.examples"


def test_the_document_shows_every_channel_and_the_new_answers() -> None:
    found = doc_examples()
    channels = {c.Topic.parse(topic).channel for topic, _body in found}
    assert channels == set(c.Channel)
    answers = [c.decode(topic, body) for topic, body in found
               if topic.endswith("/cmd/result")]
    assert any(isinstance(a, c.CommandResult) and a.ok for a in answers)
    assert any(isinstance(a, c.CommandResult) and not a.ok and a.error for a in answers)
    states = [c.decode(topic, body) for topic, body in found if topic.endswith("/state")]
    online = [s for s in states if isinstance(s, c.GatewayState) and s.status == "online"]
    assert online and all(s.config_version is not None and s.config_version.isdecimal()
                          and s.outbox is not None and s.devices_total is not None
                          for s in online)
