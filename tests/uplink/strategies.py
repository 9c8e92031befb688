"""Hypothesis strategies for every contract message."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hypothesis import strategies as st

from gateway.alarms.events import EventKind
from gateway.alarms.lifecycle import AlarmState
from gateway.alarms.types import Severity
from gateway.contract import wire as c
from gateway.field.sample import Quality, Sample

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)
names = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
points = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,40}", fullmatch=True)
ns = st.integers(0, 2**62)
text = st.text(max_size=40)
values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30))
req_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,30}", fullmatch=True)
actors = st.text(min_size=1, max_size=20)
up = {"site": ids, "gateway": ids}


def samples(min_size: int = 1, max_size: int = 30) -> st.SearchStrategy[list[Sample]]:
    return st.lists(st.builds(Sample, points, values, ns, st.sampled_from(Quality)),
                    min_size=min_size, max_size=max_size)


telemetry = st.builds(
    lambda site, gw, seq, produced, smp, cat: c.TelemetryBatch.from_samples(
        site=site, gateway=gw, seq=seq, produced=produced, samples=smp, catalog=cat),
    ids, ids, st.integers(0, 2**62), ns, samples(),
    st.none() | st.from_regex(r"[0-9a-f]{16}", fullmatch=True))

point_meta = st.builds(c.PointMeta, device=ids, room=st.none() | ids,
                       quantity=st.none() | names, unit=st.none() | st.text(max_size=8))
catalog = st.builds(
    lambda site, gw, produced, pts: c.PointCatalog.build(
        site=site, gateway=gw, produced=produced, points=pts),
    ids, ids, ns, st.dictionaries(points, point_meta, max_size=10))

streams = st.integers(1, 2**63 - 1)
delivered = st.none().map(lambda _: {"stream": None, "dseq": None}) | st.builds(
    lambda stream, dseq: {"stream": stream, "dseq": dseq}, streams, st.integers(1, 2**63 - 1))
"""(stream, dseq) of a message the ingest acknowledges, or neither (PUBACK-only delivery)."""
telemetry = telemetry.flatmap(lambda m: delivered.map(lambda d: m.model_copy(update=d)))
delivery_info = st.builds(c.DeliveryInfo, mode=st.sampled_from(["ingest", "puback"]),
                          stream=st.none() | streams,
                          floor=st.none() | st.integers(1, 2**63 - 1))
delivery_ack = st.integers(0, 2**62).flatmap(lambda upto: st.builds(
    c.DeliveryAck, **up, ts=ns, stream=streams, upto=st.just(upto),
    highest=st.integers(upto, 2**63 - 1)))

alarm_event = st.builds(
    c.AlarmEventMessage, **up, seq=st.integers(0, 2**62), ts=ns,
    kind=st.sampled_from(EventKind), rule=st.text(min_size=1, max_size=30),
    subject=st.text(min_size=1, max_size=30), state=st.sampled_from(AlarmState),
    previous_state=st.sampled_from(AlarmState), value=values,
    severity=st.none() | st.sampled_from(Severity), actor=actors, note=st.none() | text,
    first_out=st.booleans(), room=st.none() | ids, title=text, chattering=st.booleans(),
).flatmap(lambda m: delivered.map(lambda d: m.model_copy(update=d)))

active_alarm = st.builds(
    c.ActiveAlarm, rule=st.text(min_size=1, max_size=30),
    subject=st.text(min_size=1, max_size=30), state=st.sampled_from(AlarmState),
    severity=st.sampled_from(Severity), title=text, room=st.none() | ids, value=values,
    activated=st.none() | ns, acked_by=st.none() | actors, acked=st.none() | ns,
    first_out=st.booleans(), chattering=st.booleans())
snapshot = st.builds(c.ActiveAlarmsSnapshot, **up, ts=ns, seq=st.integers(0, 2**62),
                     alarms=st.lists(active_alarm, max_size=5).map(tuple),
                     omitted=st.none() | st.integers(1, 2**62))

outbox_status = st.builds(c.OutboxStatus, depth=st.integers(0, 10**9),
                          bytes=st.integers(0, 10**12), budget=st.integers(0, 10**12),
                          oldest_age_s=st.none() | st.floats(0, 1e9))
state = st.builds(
    c.GatewayState, **up, status=st.sampled_from(["online", "offline"]), ts=ns,
    software=st.none() | st.text(max_size=10),
    config_version=st.none() | st.text(max_size=10),
    config_hash=st.none() | st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    catalog=st.none() | st.from_regex(r"[0-9a-f]{16}", fullmatch=True), boot=st.none() | ns,
    outbox=st.none() | outbox_status,
    dropped=st.dictionaries(st.sampled_from(c.MessageKind), st.integers(0, 10**9)),
    devices_online=st.none() | st.integers(0, 1000),
    devices_total=st.none() | st.integers(0, 1000), delivery=st.none() | delivery_info)

alarm_ref = st.builds(c.AlarmRef, rule=st.text(min_size=1, max_size=20),
                      subject=st.text(min_size=1, max_size=20))
_cmd: dict[str, Any] = {"id": req_ids, "ts": ns, "expires": st.none() | ns,
                        "actor": st.none() | actors, "gateway": st.none() | ids,
                        "key_id": st.none() | st.from_regex(r"[0-9a-f]{16}", fullmatch=True),
                        "signature": st.none() | st.text(min_size=1, max_size=20)}
scopes = st.text(min_size=1, max_size=20)
commands = st.one_of(
    st.builds(c.Acknowledge, **_cmd, action=st.just("acknowledge"),
              alarms=st.lists(alarm_ref, min_size=1, max_size=3).map(tuple),
              note=st.none() | text),
    st.builds(c.AcknowledgeAll, **_cmd, action=st.just("acknowledge_all"),
              room=st.none() | ids, note=st.none() | text),
    st.builds(c.Shelve, **_cmd, action=st.just("shelve"), alarm=alarm_ref, until=ns,
              reason=st.text(min_size=1, max_size=20)),
    st.builds(c.Unshelve, **_cmd, action=st.just("unshelve"), alarm=alarm_ref),
    st.builds(c.Suppress, **_cmd, action=st.just("suppress"), scope=scopes, until=ns,
              reason=st.text(min_size=1, max_size=20)),
    st.builds(c.Unsuppress, **_cmd, action=st.just("unsuppress"), scope=scopes),
    st.builds(c.RequestState, **_cmd, action=st.just("request_state")),
)
command_result = st.builds(c.CommandResult, **up, id=req_ids, ts=ns, ok=st.booleans(),
                           code=st.none() | st.from_regex(r"[a-z][a-z0-9_]{0,20}",
                                                          fullmatch=True),
                           error=st.none() | text, actor=st.none() | actors,
                           changed=st.none() | st.integers(0, 1000))
config_set = st.builds(
    lambda rid, ts, gw, version, author, force, key, sig, body: c.ConfigSet(
        id=rid, ts=ts, gateway=gw, version=version, author=author, force=force, key_id=key,
        signature=sig, config=body, sha256=hashlib.sha256(body.encode()).hexdigest()),
    req_ids, ns, ids, st.integers(min_value=1, max_value=2**63 - 1), actors, st.booleans(),
    st.none() | st.from_regex(r"[0-9a-f]{16}", fullmatch=True),
    st.none() | st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=200))
versions = st.none() | st.integers(min_value=0, max_value=2**63 - 1)
config_status = st.builds(
    c.ConfigStatus, **up, id=st.none() | req_ids, ts=ns,
    state=st.sampled_from(["received", "rejected", "staged", "applying", "applied",
                           "rolled_back"]),
    code=st.none() | st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True),
    version=versions, sha256=st.none() | st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    error=st.none() | text, active_version=versions,
    active_sha256=st.none() | st.from_regex(r"[0-9a-f]{64}", fullmatch=True))

messages = st.one_of(telemetry, catalog, alarm_event, snapshot, state, commands,
                     command_result, config_set, config_status, delivery_ack)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=10),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                              max_size=4),
    max_leaves=20)


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()
