"""Two overlapping flashes (audit, real Mosquitto and gateway): v16's final "applied" was
replaced in the uplink's outbox, before it was sent, by v15's rejection (a retained status
replaces an older unsent one), so the flash of v16 timed out although v16 was applied. A
request's final status (applied, rejected, rolled back) is now never replaced by another
request's status: both flashers get their answer, and the retained status is the newest."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from gateway.flashing.envelope import sign_config
from gateway.flashing.keys import load_private_key
from tests.apply.conftest import device, until
from tests.apply.test_flash_mqtt import statuses
from tests.fixtures.services import Broker, Subscriber
from tests.flashing.live import FINAL, live_gateway


def offset(value: float) -> Any:
    def change(data: dict[str, Any]) -> None:
        device(data, "th-tx-a03").setdefault("points", {})["temperature"] = {"offset": value}
    return change


async def test_each_overlapping_flash_gets_its_final_answer(tmp_path: Path,
                                                             broker: Broker) -> None:
    async with live_gateway(tmp_path, broker) as live:
        gw = live.run.service.gateway
        key = load_private_key(live.ops)
        envs = {}
        for version, value in ((16, 0.3), (15, 0.4)):
            text = live.write(f"v{version}.yaml", offset(value)).read_text()
            envs[version] = sign_config(text, gateway=live.gateway_id, version=version,
                                        author="ops", private_key=key)
        # v16 first; v15 arrives while v16 is on trial and waits for it (then: a downgrade)
        live.pub.send(live.set_topic, json.dumps(envs[16].model_dump(mode="json")).encode())
        await until(lambda: any(s.get("id") == envs[16].id and s["state"] == "applying"
                                for s in statuses(live.sub, live.status_topic)), 15,
                    "v16 applying")
        live.pub.send(live.set_topic, json.dumps(envs[15].model_dump(mode="json")).encode())

        def final(version: int) -> dict[str, Any] | None:
            return next((s for s in statuses(live.sub, live.status_topic)
                         if s.get("id") == envs[version].id and s["state"] in FINAL), None)
        await until(lambda: final(15) is not None, 30, "v15's answer")
        await asyncio.sleep(1.5)  # (an outbox commit interval and more)
        assert gw.config_version == 16
        assert (final(15) or {}).get("code") == "downgrade"
        assert (final(16) or {}).get("state") == "applied", \
            [(s.get("version"), s["state"]) for s in statuses(live.sub, live.status_topic)]
        # what stays retained is the newest: v15's refusal, which says v16 runs
        late = Subscriber(broker.port, [live.status_topic])
        try:
            await until(lambda: len(late.snapshot()) == 1, 10, "the retained status")
            retained = json.loads(late.snapshot()[0].payload)
            assert retained["id"] == envs[15].id and retained["active_version"] == 16
        finally:
            late.close()
