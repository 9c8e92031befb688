"""Signed configs flashed to the real gateway over a real Mosquitto (`roomwarden flash`):
applied and reported; unsigned, wrongly signed, replayed, oversized, schema-invalid and
garbage envelopes refused with a clear status while the running config stays as it was."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from gateway.flashing.envelope import sign_config
from gateway.flashing.flash_client import FlashOptions, flash
from gateway.flashing.keys import load_private_key, new_key_pair, public_key_line, public_of
from tests.apply.conftest import Running, device, edit_config, running_service, until
from tests.fixtures.services import Broker, Subscriber, broker

__all__ = ["broker"]

ROOT = "roomwarden"


def topics(run: Running) -> tuple[str, str, str]:
    gw = run.service.gateway.loaded.config.gateway
    base = f"{ROOT}/{gw.site}/{gw.id}"
    return f"{base}/config/set", f"{base}/config/status", f"{base}/state"


def statuses(sub: Subscriber, topic: str) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in sub.snapshot(lambda m: m.topic == topic)]


class Publisher:
    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-flasher")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def test_flash_over_mqtt_applies_and_refuses_bad_envelopes(
        tmp_path: Path, broker: Broker) -> None:
    keys = tmp_path / "keys"
    private_path, _ = new_key_pair(keys, "ops")
    new_key_pair(keys, "rogue")
    ops = load_private_key(private_path)
    rogue = load_private_key(keys / "rogue.key")
    trusted = public_key_line(public_of(ops), "ops")

    def with_uplink(data: dict[str, Any]) -> None:
        data["uplink"] = {"broker": "127.0.0.1", "port": broker.port, "protocol": "5"}
        data["flashing"].update({"trusted_keys": [trusted], "max_bytes": 65536})

    async with running_service(tmp_path, change=with_uplink) as run:
        gw = run.service.gateway
        set_topic, status_topic, state_topic = topics(run)
        sub = Subscriber(broker.port, [status_topic, state_topic])
        pub = Publisher(broker.port)
        try:
            await until(lambda: gw.uplink is not None and gw.uplink.status().subscribed, 15,
                        "uplink connected")
            assert run.service.loop_errors is not None  # asyncio's log is rate-limited
            assert run.service.loop_errors in logging.getLogger("asyncio").filters

            # 1. a good config, flashed with the real client, is applied and reported
            good = tmp_path / "good.yaml"
            good.write_text(edit_config(run.text, lambda d: device(d, "th-tx-a03")
                                        .setdefault("points", {})
                                        .update({"temperature": {"offset": 0.3}})))
            options = FlashOptions(config=good, gateway=gw.loaded.config.gateway.id,
                                   broker=f"mqtt://127.0.0.1:{broker.port}", key=private_path,
                                   author="alice", timeout=60)
            code = await asyncio.to_thread(flash, options)
            assert code == 0
            assert gw.config_version == 1
            await until(lambda: any(s.get("config_version") == "1"
                                    for s in statuses(sub, state_topic)), 15,
                        "the state message carries the new version")
            applied_text = good.read_text()

            async def refused(payload: bytes, request_id: str | None) -> dict[str, Any]:
                before = len(statuses(sub, status_topic))
                pub.send(set_topic, payload)

                def answered() -> bool:
                    return any(s["state"] == "rejected" and s.get("id") == request_id
                               for s in statuses(sub, status_topic)[before:])
                await until(answered, 15, f"the refusal of {request_id}")
                return next(s for s in statuses(sub, status_topic)[before:]
                            if s["state"] == "rejected" and s.get("id") == request_id)

            def envelope(text: str, version: int, key: Any = ops, **extra: Any) -> dict[str, Any]:
                env = sign_config(text, gateway=gw.loaded.config.gateway.id, version=version,
                                  author="mallory", private_key=key, **extra)
                return env.model_dump(mode="json")

            # 2. unsigned
            env = envelope(applied_text + "\n# v2\n", 2)
            env.pop("signature")
            got = await refused(json.dumps(env).encode(), env["id"])
            assert got["code"] in ("unsigned", "malformed")
            # 3. signed by a key the gateway does not trust
            env = envelope(applied_text + "\n# v3\n", 3, key=rogue)
            assert (await refused(json.dumps(env).encode(), env["id"]))["code"] == \
                "untrusted_key"
            # 4. a trusted key id but a tampered body (signature no longer matches)
            env = envelope(applied_text + "\n# v4\n", 4)
            env["author"] = "someone else"
            assert (await refused(json.dumps(env).encode(), env["id"]))["code"] == \
                "bad_signature"
            # 5. a replay of an envelope already processed, and a downgrade
            env = envelope(applied_text + "\n# v5\n", 1)
            assert (await refused(json.dumps(env).encode(), env["id"]))["code"] in \
                ("replayed", "downgrade")
            # 6. oversized
            env = envelope(applied_text + "#" * 70_000 + "\n", 6)
            assert (await refused(json.dumps(env).encode(), env["id"]))["code"] == "oversized"
            # 7. signed and fresh, but the config is schema-invalid
            bad = edit_config(applied_text, lambda d: d.update(buses="not a list"))
            env = envelope(bad, 7)
            got = await refused(json.dumps(env).encode(), env["id"])
            assert got["code"] == "invalid_config" and "buses" in got["error"]
            # 7b. an id no ConfigStatus can carry (a space, non-ASCII): still answered, with
            # no id (it once raised in the answer and left the flasher with none)
            for odd in ("id with a space", "id-\u00e9t\u00e9"):
                env = envelope(applied_text + "\n# odd\n", 9)
                env["id"] = odd
                got = await refused(json.dumps(env).encode(), None)
                assert got["code"] in ("malformed", "bad_signature")

            # 8. garbage of every shape (hypothesis): refused or ignored, never fatal
            sent: list[bytes] = []

            @settings(max_examples=25, deadline=None,
                      suppress_health_check=list(HealthCheck))
            @given(st.one_of(st.binary(max_size=300),
                             st.dictionaries(st.text(max_size=8), st.text(max_size=8))
                             .map(lambda d: json.dumps(d).encode())))
            def garbage(payload: bytes) -> None:
                sent.append(payload)

            garbage()
            for payload in sent:
                pub.send(set_topic, payload)
            # handled in the order sent: a refusal after them says every one was handled
            env = envelope(applied_text + "\n# after the garbage\n", 8, key=rogue)
            assert (await refused(json.dumps(env).encode(), env["id"]))["code"] == \
                "untrusted_key"

            # nothing of that changed the running config, and the gateway runs on
            assert gw.config_version == 1 and gw.reconfigurations == 1
            assert run.service.store.active_meta().version == 1  # type: ignore[union-attr]
            assert gw.uplink is not None and gw.uplink.status().connected
            th = next(d for d in gw.loaded.config.devices if d.id == "th-tx-a03")
            assert th.points["temperature"].offset == 0.3
            await until(run.all_online, 10, "every device online")
        finally:
            pub.close()
            sub.close()
