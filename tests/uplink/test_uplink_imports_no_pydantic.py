"""A running gateway's uplink imports neither pydantic nor pydantic-core at rest (issue 15): it
writes its state, catalog, telemetry, active-alarm snapshot and alarm events without the
contract's models (gateway.contract.outbound, gateway.contract.alarm_reports,
gateway.contract.telemetry_encoder, JSON through gateway.contract.jsontext) and reads the
ingest's acknowledgements without `DeliveryAck` (gateway.contract.inbound); the models are
imported at the first operator command, config status or incident record (and by the
config's validation, in the checking child). The gateway's real `Uplink`, built in a fresh
interpreter from its settings unpickled (as a running gateway gets them from its check),
publishes to a real Mosquitto and takes a real acknowledgement from it; what arrived is read
back with `decode` (the ingest's path, with the models) and is the models' own bytes."""

from __future__ import annotations

import asyncio
import pickle
from collections import Counter
from pathlib import Path

from gateway.contract import wire as c
from gateway.uplink.settings import OutboxSettings, UplinkSettings
from tests.helpers import PROBE_UNTIL
from tests.ops.test_lazy_imports import run_fresh
from tests.uplink.conftest import Broker, Subscriber

SITE, GW = "site-1", "gw-1"

PROBE = """
    import asyncio, json, os, pickle, sys, time
    from pathlib import Path

    from gateway.alarms.events import AlarmEvent, EventKind
    from gateway.alarms.lifecycle import AlarmState
    from gateway.alarms.types import Severity
    from gateway.clock import SystemClock
    from gateway.contract.enums import Quality
    from gateway.contract.outbound import PointTags
    from gateway.contract.sample import Sample
    from gateway.uplink.publisher import Uplink

    tmp, port = Path(sys.argv[2]), int(os.environ["PROBE_BROKER_PORT"])
    SITE, GW = "site-1", "gw-1"
    TAGS = PointTags("th-1", "r1", "temperature", "°C")
    POINTS = {"th-1.temperature": TAGS, "th-1.humidity": PointTags("th-1", "r1")}
    at_import = sorted(m for m in ("pydantic", "pydantic_core") if m in sys.modules)

    def acknowledge(stream, upto):
        '''The ingest's acknowledgement, published retained by another client (as the ingest
        does): its bytes written here by hand, checked with `decode` by the test.'''
        import paho.mqtt.client as mqtt

        payload = json.dumps({"v": 1, "site": SITE, "gateway": GW, "ts": time.time_ns(),
                              "stream": stream, "upto": upto, "highest": upto},
                             separators=(",", ":")).encode()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="probe-ingest")
        client.connect("127.0.0.1", port)
        client.loop_start()
        client.publish(f"roomwarden/{SITE}/{GW}/ack", payload, qos=1, retain=True
                       ).wait_for_publish(10)
        client.disconnect()
        client.loop_stop()
        return payload.decode()

""" + PROBE_UNTIL + """
    async def main():
        settings = pickle.loads((tmp / "uplink.pickle").read_bytes())  # as from the check
        uplink = Uplink(settings, SITE, GW, tmp / "state", SystemClock(), POINTS)
        task = asyncio.create_task(uplink.run())
        await until(lambda: uplink.status().connected, "connected")
        uplink.set_active_alarms([], 0)
        for i in range(3):
            now = time.time_ns()
            uplink.on_samples([Sample("th-1.temperature", 20.5 + i, now, Quality.GOOD),
                               Sample("th-1.humidity", 1e-6 * i, now, Quality.GOOD)])
            await asyncio.sleep(0.3)
        uplink.on_alarm_events([AlarmEvent(
            seq=1, ts=time.time_ns(), kind=EventKind.ALARM, rule="high_temp",
            subject="th-1.temperature", state=AlarmState.ACTIVE_UNACKNOWLEDGED,
            previous_state=AlarmState.NORMAL, value=45.5, severity=Severity.MAJOR,
            actor="system", note=None, first_out=True, room="r1", title="High temperature")])
        await until(lambda: uplink.status().published >= 7, "published")
        ack = await asyncio.to_thread(acknowledge, uplink.outbox.stream, 2)
        await until(lambda: uplink.status().covered >= 2, "the acknowledgement taken")
        status = uplink.status()
        await uplink.close()
        task.cancel()
        print(json.dumps({"at_import": at_import, "published": status.published,
                          "covered": status.covered, "ack": ack, "rejected": status.rejected,
                          "loaded": sorted(m for m in ("pydantic", "pydantic_core")
                                           if m in sys.modules)}))

    asyncio.run(main())
"""


async def test_the_uplink_publishes_and_takes_an_ack_without_pydantic(
        broker: Broker, tmp_path: Path) -> None:
    settings = UplinkSettings(broker="127.0.0.1", port=broker.port, delivery="ingest",
                              reconnect_min=0.1, reconnect_max=0.5, state_interval=1.0,
                              outbox=OutboxSettings(commit_interval=0.2))  # validated here
    (tmp_path / "uplink.pickle").write_bytes(pickle.dumps(settings))
    subscriber = Subscriber(broker.port, "roomwarden/#")
    try:
        assert await asyncio.to_thread(subscriber.subscribed.wait, 10)
        found = await asyncio.to_thread(run_fresh, PROBE, tmp_path,
                                        {"PROBE_BROKER_PORT": str(broker.port)})
        await asyncio.sleep(0.5)  # the goodbye's delivery to the subscriber
        received = subscriber.snapshot()
    finally:
        subscriber.close()
    assert found["at_import"] == [] and found["loaded"] == [], found
    assert found["rejected"] == 0
    covered = found["covered"]
    assert isinstance(covered, int) and covered >= 2
    ack = found["ack"]
    assert isinstance(ack, str)
    taken = c.decode(f"roomwarden/{SITE}/{GW}/ack", ack.encode())  # a real one, as the ingest's
    assert isinstance(taken, c.DeliveryAck) and (taken.upto, taken.highest) == (2, 2)
    decoded = [c.decode(m.topic, m.payload) for m in received]  # the ingest's path
    kinds = Counter(type(m).__name__ for m in decoded)
    assert kinds["GatewayState"] >= 2 and kinds["PointCatalog"] >= 1, kinds
    assert kinds["TelemetryBatch"] >= 3 and kinds["AlarmEventMessage"] == 1, kinds
    assert kinds["ActiveAlarmsSnapshot"] == 1 and kinds["DeliveryAck"] == 1, kinds
    for message, m in zip(decoded, received, strict=True):  # the models' own bytes
        if not isinstance(message, c.DeliveryAck):
            assert c.encode(message) == m.payload
    states = [m for m in decoded if isinstance(m, c.GatewayState)]
    assert states[-1].status == "offline"  # the goodbye
    online = [s for s in states if s.status == "online"]
    assert online and online[-1].delivery is not None and online[-1].delivery.mode == "ingest"
