"""A running gateway builds no pydantic validator or serializer (issue 15): it encodes what it
produces — its state (with the outbox's figures and the delivery terms), its point catalog,
its telemetry — without the contract's models (gateway.contract.outbound,
gateway.contract.telemetry_encoder); the six it built before cost 1.4 MiB of every gateway's
memory. The real `roomwarden run` service, in a fresh interpreter, polls the simulator (run
here, so the gateway's process loads no config itself) and publishes to a real Mosquitto; what
arrives is read back by `decode`, the ingest's path."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import yaml

from gateway.config.loader import load_gateway_config
from gateway.contract import wire as c
from gateway.sim.site import SimulatedSite
from tests.fixtures.services import Subscriber, wait_for
from tests.ops.conftest import SITE, Broker
from tests.ops.test_lazy_imports import run_fresh

PROBE = """
    import asyncio, json, sys, time
    from pathlib import Path
    import gateway.cli, gateway.run_cli, gateway.supervisor  # what `roomwarden run` imports
    import pydantic
    from pydantic._internal._mock_val_ser import MockValSer
    from gateway.supervisor import Service

    tmp = Path(sys.argv[2])

    def built():
        '''Every pydantic model whose validator or serializer is built (not pydantic's
        placeholder for a deferred one).'''
        seen, todo = set(), [pydantic.BaseModel]
        while todo:
            for sub in todo.pop().__subclasses__():
                if sub not in seen:
                    seen.add(sub)
                    todo.append(sub)
        return sorted(f"{m.__module__}.{m.__qualname__}" for m in seen
                      if not isinstance(m.__pydantic_validator__, MockValSer)
                      or not isinstance(m.__pydantic_serializer__, MockValSer)), len(seen)

    async def main():
        service = Service(tmp / "gateway.yaml", state_dir=tmp / "state",
                          control_path=tmp / "control.sock", panel_port=0)
        task = asyncio.create_task(service.run())
        deadline = time.monotonic() + 60
        uplink = None
        while uplink is None or uplink.status().published < 8:  # births, refreshes, batches
            assert time.monotonic() < deadline, "nothing published"
            await asyncio.sleep(0.1)
            uplink = service.gateway.uplink
        service.stop()  # the clean goodbye (offline state) too
        await task
        models, count = built()
        from gateway.contract.wire import DeliveryInfo
        DeliveryInfo(mode="puback")  # one built: the probe sees it
        print(json.dumps({"built": models, "models": count,
                          "probe": built()[0], "published": uplink.status().published}))

    asyncio.run(main())
"""


async def test_a_running_gateway_publishes_without_building_a_validator(
        broker: Broker, tmp_path: Path) -> None:
    subscriber = Subscriber(broker.port, "roomwarden/#")
    try:
        async with SimulatedSite(load_gateway_config(SITE)) as site:
            config = site.rewritten_config()
            config["uplink"] = {"broker": "127.0.0.1", "port": broker.port,
                                "state_interval": "1s"}
            (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
            found = await asyncio.to_thread(run_fresh, PROBE, tmp_path)
        wait_for(lambda: {"state", "meta", "telemetry"} <= {
            m.topic.rsplit("/", 1)[-1] for m in subscriber.snapshot()} and any(
            b'"status":"offline"' in m.payload for m in subscriber.snapshot()),
            what="every kind, and the goodbye")
        received = subscriber.snapshot()
    finally:
        subscriber.close()
    models = found["models"]
    assert isinstance(models, int) and models > 100  # the contract's, config's, reports'
    assert found["built"] == []
    assert found["probe"] == ["gateway.contract.telemetry.DeliveryInfo"]
    decoded = [c.decode(m.topic, m.payload) for m in received]  # the ingest's path
    kinds = Counter(type(m).__name__ for m in decoded)
    assert kinds["GatewayState"] >= 2 and kinds["PointCatalog"] >= 1, kinds
    assert kinds["TelemetryBatch"] >= 1, kinds
    states = [m for m in decoded if isinstance(m, c.GatewayState)]
    online = [s for s in states if s.status == "online"]
    assert online and online[-1].outbox is not None and online[-1].delivery is not None
    assert online[-1].delivery.mode == "ingest" and online[-1].devices_total == 5
    assert states[-1].status == "offline"  # the goodbye
    catalog = next(m for m in decoded if isinstance(m, c.PointCatalog))
    batches = [m for m in decoded if isinstance(m, c.TelemetryBatch)]
    assert {b.catalog for b in batches} == {catalog.catalog} == {online[-1].catalog}
    assert {p for b in batches for p, *_ in b.samples} <= set(catalog.points)
