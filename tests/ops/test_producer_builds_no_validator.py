"""A running gateway builds no pydantic validator or serializer (issue 15): it encodes what it
produces — its state (with the outbox's figures and the delivery terms), its point catalog,
its telemetry — without the contract's models (gateway.contract.outbound,
gateway.contract.telemetry_encoder), reads the ingest's acknowledgements without
`DeliveryAck` (gateway.contract.inbound), and answers its status (control socket), /healthz
and /metrics without the report models (gateway.ops.health_report, gateway.ops.status_report):
the first validator a process builds costs it ~1.35 MiB of pydantic's schema machinery. The
real `roomwarden run` service, in a fresh interpreter, polls the simulator (run here, so the
gateway's process loads no config itself), publishes to a real Mosquitto and a real ingest
(writing to VictoriaMetrics) acknowledges what it stored; what arrives is read back by
`decode`, the ingest's path."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import yaml

from gateway.config.loader import load_gateway_config
from gateway.contract import wire as c
from gateway.sim.site import SimulatedSite
from tests.fixtures.services import Subscriber, Victoria, wait_for
from tests.ingest.test_service import make_settings, subscribed
from tests.ops.conftest import SITE, Broker
from tests.ops.test_lazy_imports import run_fresh

PROBE = """
    import asyncio, gc, json, sys, time, urllib.request
    from pathlib import Path
    import gateway.cli, gateway.run_cli, gateway.supervisor  # what `roomwarden run` imports
    import pydantic
    from pydantic_core import SchemaValidator
    from pydantic._internal._mock_val_ser import MockValSer
    from gateway.control import request
    from gateway.supervisor import Service

    tmp = Path(sys.argv[2])

    def built():
        '''Every pydantic model whose validator or serializer is built (not pydantic's
        placeholder for a deferred one), and every validator alive (a TypeAdapter's too:
        `decode` validates through one, the model's own stays a placeholder).'''
        seen, todo = set(), [pydantic.BaseModel]
        while todo:
            for sub in todo.pop().__subclasses__():
                if sub not in seen:
                    seen.add(sub)
                    todo.append(sub)
        models = sorted(f"{m.__module__}.{m.__qualname__}" for m in seen
                        if not isinstance(m.__pydantic_validator__, MockValSer)
                        or not isinstance(m.__pydantic_serializer__, MockValSer))
        validators = sorted(v.title for v in gc.get_objects()
                            if isinstance(v, SchemaValidator))
        return models, len(seen), validators

    def get(url):
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:  # 503: failing (the status code is the answer)
            return exc.code, exc.read().decode()

    async def main():
        service = Service(tmp / "gateway.yaml", state_dir=tmp / "state",
                          control_path=tmp / "control.sock", panel_port=0)
        task = asyncio.create_task(service.run())
        deadline = time.monotonic() + 60
        uplink = None
        while uplink is None or uplink.status().published < 8 or uplink.status().covered < 2:
            assert time.monotonic() < deadline, "nothing published, or nothing acknowledged"
            await asyncio.sleep(0.1)  # births, refreshes, batches; the ingest's watermark
            uplink = service.gateway.uplink
        answers = await asyncio.to_thread(
            lambda: list(request(tmp / "control.sock", {"op": "status"}, timeout=10)))
        url = f"http://127.0.0.1:{service.gateway.panel_port}"
        healthz = await asyncio.to_thread(get, url + "/healthz")
        metrics = await asyncio.to_thread(get, url + "/metrics")
        status = uplink.status()
        service.stop()  # the clean goodbye (offline state) too
        await task
        models, count, validators = built()
        from gateway.contract.wire import DeliveryInfo
        DeliveryInfo(mode="puback")  # one built: the probe sees it
        print(json.dumps({"built": models, "models": count, "validators": validators,
                          "probe": built()[::2],
                          "published": status.published, "covered": status.covered,
                          "status": answers[-1], "healthz": healthz,
                          "metrics": [metrics[0], metrics[1].count("roomwarden_health_status")]}))

    asyncio.run(main())
"""


async def test_a_running_gateway_publishes_acknowledges_and_reports_without_a_validator(
        broker: Broker, victoria: Victoria, tmp_path: Path) -> None:
    subscriber = Subscriber(broker.port, "roomwarden/#")
    try:
        with subscribed(make_settings(tmp_path, broker, victoria)):
            async with SimulatedSite(load_gateway_config(SITE)) as site:
                config = site.rewritten_config()
                config["uplink"] = {"broker": "127.0.0.1", "port": broker.port,
                                    "state_interval": "1s"}
                (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
                found = await asyncio.to_thread(run_fresh, PROBE, tmp_path)
        wait_for(lambda: {"state", "meta", "telemetry", "ack"} <= {
            m.topic.rsplit("/", 1)[-1] for m in subscriber.snapshot()} and any(
            b'"status":"offline"' in m.payload for m in subscriber.snapshot()),
            what="every kind, the ingest's acknowledgement and the goodbye")
        received = subscriber.snapshot()
    finally:
        subscriber.close()
    # not one model is even defined: a gateway at rest imports none (the contract's, the
    # panel's: at the first command, incident, config message or panel request; the config
    # sections are dataclasses, gateway.config.section: in `validators` once built)
    assert found["models"] == 0
    assert found["built"] == [] and found["validators"] == []
    assert found["probe"] == [["gateway.contract.telemetry.DeliveryInfo"], ["DeliveryInfo"]]
    # the watermark was taken; the status and health were answered
    assert isinstance(found["covered"], int) and found["covered"] >= 2
    answer = found["status"]
    assert isinstance(answer, dict) and answer["ok"] is True
    report = answer["status"]
    assert report["uplink"]["connected"] is True and report["health"]["checks"]["uplink"]
    assert [d["id"] for b in report["buses"] for d in b["devices"]]
    healthz, metrics = found["healthz"], found["metrics"]
    assert isinstance(healthz, list) and isinstance(metrics, list)
    assert healthz[0] in (200, 503) and '"checks":{"buses":' in healthz[1]
    assert '"summary":' in healthz[1]
    assert metrics[0] == 200 and metrics[1] > 9  # checks × levels
    decoded = [c.decode(m.topic, m.payload) for m in received]  # the ingest's path
    kinds = Counter(type(m).__name__ for m in decoded)
    assert kinds["GatewayState"] >= 2 and kinds["PointCatalog"] >= 1, kinds
    assert kinds["TelemetryBatch"] >= 1 and kinds["DeliveryAck"] >= 1, kinds
    states = [m for m in decoded if isinstance(m, c.GatewayState)]
    online = [s for s in states if s.status == "online"]
    assert online and online[-1].outbox is not None and online[-1].delivery is not None
    assert online[-1].delivery.mode == "ingest" and online[-1].devices_total == 5
    assert states[-1].status == "offline"  # the goodbye
    catalog = next(m for m in decoded if isinstance(m, c.PointCatalog))
    batches = [m for m in decoded if isinstance(m, c.TelemetryBatch)]
    assert {b.catalog for b in batches} == {catalog.catalog} == {online[-1].catalog}
    assert {p for b in batches for p, *_ in b.samples} <= set(catalog.points)
