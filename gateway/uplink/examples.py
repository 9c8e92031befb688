"""One example of every MQTT message, built from the contract's models.

`python -m gateway.uplink.examples` prints the examples section of docs/mqtt-contract.md; the
tests check that the document shows exactly these, and that each one decodes.
"""

from __future__ import annotations

import base64
import hashlib
import json

from gateway.alarms.events import EventKind
from gateway.alarms.lifecycle import AlarmState
from gateway.alarms.types import Severity
from gateway.contract.wire import (
    DEFAULT_ROOT,
    INCIDENT_FORMAT,  # issue 12
    ActiveAlarm,
    ActiveAlarmsSnapshot,
    AlarmCommand,
    AlarmEventMessage,
    AlarmRef,
    Channel,
    CommandResult,
    ConfigSet,
    ConfigStatus,
    DeliveryAck,
    DeliveryInfo,
    GatewayState,
    IncidentChunk,
    Message,
    MessageKind,
    OutboxStatus,
    PointCatalog,
    PointMeta,
    RequestState,
    TelemetryBatch,
    Topic,
    channel_of,
    encode,
    split_record,
)
from gateway.field.sample import Quality, Sample

SITE, GATEWAY = "bj-yizhuang-idc", "gw-bj-yz-01"
T = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
STREAM = 3_141_592_653_589_793  # the outbox's delivery stream


def _signed(*, now: int = T, **fields: object) -> AlarmCommand:
    """A command signed with the example operator key (deterministic: Ed25519 signs the same
    bytes the same way), valid for 2 minutes."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gateway.operator.signing import sign_command

    key = Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"roomwarden example operator key").digest())
    return sign_command(dict(fields), key, gateway=GATEWAY, site=SITE, root=DEFAULT_ROOT,
                        now_ns=now)


def _points() -> dict[str, PointMeta]:
    return {
        "th-1.temperature": PointMeta(device="th-1", room="battery-1", quantity="temperature",
                                      unit="°C"),
        "th-1.humidity": PointMeta(device="th-1", room="battery-1",
                                   quantity="relative_humidity", unit="%"),
        "h2-1.h2": PointMeta(device="h2-1", room="battery-1", quantity="h2_lel", unit="%LEL"),
        "h2-1.online": PointMeta(device="h2-1", room="battery-1"),
    }


def examples() -> list[tuple[str, Message]]:
    """(title, message) pairs, in the order the document shows them."""
    catalog = PointCatalog.build(site=SITE, gateway=GATEWAY, produced=T, points=_points())
    config = "gateway: {id: gw-bj-yz-01, site: bj-yizhuang-idc}\n"
    running = hashlib.sha256(b"gateway: {id: gw-bj-yz-01, site: bj-yizhuang-idc}  # v7\n"
                             ).hexdigest()
    return [
        ("Gateway state (birth)", GatewayState(
            site=SITE, gateway=GATEWAY, status="online", ts=T, software="0.1.0",
            config_version="7", config_hash=running, catalog=catalog.catalog,
            boot=T - 60_000_000_000,
            outbox=OutboxStatus(depth=3, bytes=2048, budget=268435456, oldest_age_s=0.4),
            dropped={MessageKind.TELEMETRY: 0, MessageKind.STATE: 0, MessageKind.ALARM: 0},
            devices_online=11, devices_total=12,
            delivery=DeliveryInfo(mode="ingest", stream=STREAM, floor=52001))),
        ("Gateway state (periodic update)", GatewayState(
            site=SITE, gateway=GATEWAY, status="online", ts=T + 60_000_000_000,
            software="0.1.0", config_version="7", config_hash=running, catalog=catalog.catalog,
            boot=T - 60_000_000_000,
            outbox=OutboxStatus(depth=41, bytes=180_224, budget=268435456,
                                oldest_age_s=37.2),
            dropped={MessageKind.TELEMETRY: 0, MessageKind.STATE: 0, MessageKind.ALARM: 0},
            devices_online=10, devices_total=12)),
        ("Gateway state (last will)", GatewayState(
            site=SITE, gateway=GATEWAY, status="offline", ts=T)),
        ("Point catalog", catalog),
        ("Telemetry batch", TelemetryBatch.from_samples(
            site=SITE, gateway=GATEWAY, seq=48213, produced=T + 2_000_000,
            catalog=catalog.catalog, samples=[
                Sample("th-1.temperature", 24.6, T, Quality.GOOD),
                Sample("th-1.humidity", 41.2, T + 1_250_000, Quality.GOOD),
                Sample("h2-1.h2", None, T + 501_000_000, Quality.COMM_ERROR),
                Sample("h2-1.online", False, T + 501_000_000, Quality.GOOD)]
        ).model_copy(update={"stream": STREAM, "dseq": 52001})),
        ("Alarm event", AlarmEventMessage(
            site=SITE, gateway=GATEWAY, seq=1207, ts=T + 3_000_000_000, kind=EventKind.ALARM,
            rule="explosion.h2_alarm", subject="h2-1.h2",
            state=AlarmState.ACTIVE_UNACKNOWLEDGED, previous_state=AlarmState.NORMAL,
            value=27.5, severity=Severity.CRITICAL, actor="system", note=None, first_out=True,
            room="battery-1", title="Hydrogen at 25 % LEL — ventilate", chattering=False,
            clock_synced=True, stream=STREAM, dseq=52002)),
        ("Delivery acknowledgement (published by the ingest)", DeliveryAck(
            site=SITE, gateway=GATEWAY, ts=T + 3_400_000_000, stream=STREAM, upto=52002,
            highest=52002)),
        ("Active alarms snapshot", ActiveAlarmsSnapshot(
            site=SITE, gateway=GATEWAY, ts=T + 3_000_000_000, seq=1207, alarms=(ActiveAlarm(
                rule="explosion.h2_alarm", subject="h2-1.h2",
                state=AlarmState.ACTIVE_UNACKNOWLEDGED, severity=Severity.CRITICAL,
                title="Hydrogen at 25 % LEL — ventilate", room="battery-1", value=27.5,
                activated=T + 3_000_000_000, first_out=True),))),
        ("Command: acknowledge (signed)", _signed(
            id="ack-7f3a", action="acknowledge", now=T + 60_000_000_000,
            alarms=(AlarmRef(rule="explosion.h2_alarm", subject="h2-1.h2"),),
            note="fan running, on site in 10 min")),
        ("Command: acknowledge all (signed)", _signed(
            id="ack-all-1", action="acknowledge_all", room="battery-1")),
        ("Command: shelve (signed)", _signed(
            id="shelve-1", action="shelve",
            alarm=AlarmRef(rule="environment.high_humidity", subject="th-1.humidity"),
            until=T + 3_600_000_000_000, reason="dehumidifier being replaced")),
        ("Command: unshelve (signed)", _signed(
            id="unshelve-1", action="unshelve",
            alarm=AlarmRef(rule="environment.high_humidity", subject="th-1.humidity"))),
        ("Command: suppress (signed)", _signed(
            id="suppress-1", action="suppress", scope="battery-1",
            until=T + 7_200_000_000_000, reason="hot work permit 42")),
        ("Command: unsuppress (signed)", _signed(
            id="unsuppress-1", action="unsuppress", scope="battery-1")),
        ("Command: reset output (signed)", _signed(
            id="reset-1", action="reset_output", output="charge-inhibit-batt",
            note="cells checked, rectifier cleared")),
        ("Command: request state (unsigned: changes no safety state)", RequestState(
            id="ingest-restart-42", ts=T, actor="ingest", action="request_state")),
        ("Command result", CommandResult(
            site=SITE, gateway=GATEWAY, id="ack-7f3a", ts=T + 60_100_000_000, ok=True,
            actor="Li Wei (NOC Beijing)", changed=1)),
        ("Command result (reset output)", CommandResult(
            site=SITE, gateway=GATEWAY, id="reset-1", ts=T + 100_000_000, ok=True,
            actor="Li Wei (NOC Beijing)", note="output charge-inhibit-batt released")),
        ("Command result (refused by the alarms)", CommandResult(
            site=SITE, gateway=GATEWAY, id="ack-all-2", ts=T + 100_000_000, ok=False,
            code="not_applicable", actor="Li Wei (NOC Beijing)",
            error="explosion.h2_alarm@h2-1.h2 is normal; nothing to acknowledge")),
        ("Command result (unsigned)", CommandResult(
            site=SITE, gateway=GATEWAY, id="ack-x7", ts=T + 100_000_000, ok=False,
            code="unsigned", error="this gateway carries out signed alarm commands only "
                                   "(roomwarden ack|shelve|unshelve --key …)")),
        ("Command result (replayed)", CommandResult(
            site=SITE, gateway=GATEWAY, id="ack-7f3a", ts=T + 900_000_000_000, ok=False,
            code="replayed", error="command ack-7f3a was received before, at "
                                   "2026-01-01T00:01:00Z (ok)")),
        ("Command result (payload breaks the contract)", CommandResult(
            site=SITE, gateway=GATEWAY, id="ack-x1", ts=T + 100_000_000, ok=False,
            code="malformed", error="bad command: cmd: acknowledge.alarms: Field required")),
        ("Config set", ConfigSet(
            id="flash-2026-01-01-1", ts=T, gateway=GATEWAY, version=8,
            sha256=hashlib.sha256(config.encode()).hexdigest(), author="li.wei",
            config=config, key_id="3f9a0c1b2d4e5f60",
            signature=base64.b64encode(bytes(range(64))).decode("ascii"))),
        ("Config status", ConfigStatus(
            site=SITE, gateway=GATEWAY, id="flash-2026-01-01-1", ts=T + 5_000_000_000,
            state="rejected", code="bad_signature", version=8,
            sha256=hashlib.sha256(config.encode()).hexdigest(),
            error="the signature does not verify with key 3f9a0c1b2d4e5f60",
            active_version=7, active_sha256=running)),
        ("Incident record chunk", _incident_chunk()),  # issue 12
    ]


# --- issue 12: a (tiny) incident record as its one chunk --------------------------------------
def _incident_chunk() -> IncidentChunk:
    import gzip

    record = {"format": INCIDENT_FORMAT, "id": "20260101T000003Z-battery-1-1207",
              "status": "closed", "kind": "alarm", "room": "battery-1"}
    data = gzip.compress(json.dumps(record, separators=(",", ":")).encode(), 6, mtime=0)
    [chunk] = split_record(data, site=SITE, gateway=GATEWAY, incident_id=record["id"],
                           status="closed", saved=T + 1_203_000_000_000)
    return chunk.model_copy(update={"stream": STREAM, "dseq": 52107})
# --- end issue 12 --------------------------------------------------------------------------


def markdown() -> str:
    """The examples as markdown: a heading, the topic, the JSON (pretty-printed here; on the
    wire it is compact)."""
    parts = []
    for title, message in examples():
        channel = channel_of(message)
        topic = Topic(SITE, GATEWAY, channel)
        spec = topic.spec
        wire = encode(message)
        pretty = json.dumps(json.loads(wire), indent=2, ensure_ascii=False)
        parts.append(
            f"### {title}\n\nTopic `{topic}` — QoS {spec.qos}"
            f"{', retained' if spec.retain else ''}, "
            f"{'gateway → central' if spec.upstream else 'central → gateway'}; "
            f"{len(wire)} bytes on the wire.\n\n```json\n{pretty}\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(markdown())

__all__ = ["Channel", "examples", "markdown"]
