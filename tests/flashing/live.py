"""A real gateway (the service `roomwarden run` runs, over simulated devices) whose uplink is a
real Mosquitto and which trusts one flashing key `ops`, for the audit's flashing findings; the
real flash client run against it; raw envelopes and forged statuses published beside it."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.contract.wire import ConfigStatus, encode
from gateway.flashing.envelope import sign_config
from gateway.flashing.flash_client import FlashOptions, flash
from gateway.flashing.keys import load_private_key, new_key_pair, public_key_line, public_of
from tests.apply.conftest import Running, edit_config, running_service, until
from tests.apply.test_flash_mqtt import Publisher, statuses, topics
from tests.fixtures.services import Broker, Subscriber

FINAL = ("applied", "rejected", "rolled_back")


@dataclass
class Live:
    run: Running
    broker: Broker
    ops: Path
    """The private key the gateway trusts."""
    other: Path
    """A key pair the gateway does not trust."""
    set_topic: str
    status_topic: str
    sub: Subscriber
    pub: Publisher

    @property
    def gateway_id(self) -> str:
        return self.run.service.gateway.loaded.config.gateway.id

    @property
    def site(self) -> str:
        return self.run.service.gateway.loaded.config.gateway.site

    def line_of(self, key: Path, name: str) -> str:
        return public_key_line(public_of(load_private_key(key)), name)

    def write(self, name: str, change: Callable[[dict[str, Any]], None]) -> Path:
        """The running config's file, changed, as `name` in the test's directory."""
        path = self.run.tmp / name
        path.write_text(edit_config(self.run.text, change), encoding="utf-8")
        return path

    async def flash(self, config: Path, *extra: tuple[str, Any],
                    timeout: float = 60) -> tuple[int, str, str]:
        """The real `roomwarden flash` client: (exit code, stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        options = FlashOptions(config=config, gateway=self.gateway_id,
                               broker=f"mqtt://127.0.0.1:{self.broker.port}", key=self.ops,
                               author="ops", timeout=timeout)
        for name, value in extra:
            setattr(options, name, value)
        code = await asyncio.to_thread(flash, options, out, err)
        return code, out.getvalue(), err.getvalue()

    async def send(self, text: str, version: int, *, key: Path | None = None,
                   force: bool = False, topic: str | None = None,
                   seconds: float = 30) -> dict[str, Any]:
        """A signed envelope published raw; the gateway's final answer to it."""
        env = sign_config(text, gateway=self.gateway_id, version=version, author="ops",
                          private_key=load_private_key(key or self.ops), force=force)
        self.pub.send(topic or self.set_topic, json.dumps(env.model_dump(mode="json")).encode())

        def final() -> dict[str, Any] | None:
            return next((s for s in statuses(self.sub, self.status_topic)
                         if s.get("id") == env.id and s["state"] in FINAL), None)
        await until(lambda: final() is not None, seconds, f"the outcome of v{version}")
        answer = final()
        assert answer is not None
        return answer

    def forge_status(self, **fields: Any) -> None:
        """A retained `config/status` as if from the gateway (the audit's forged one)."""
        status = ConfigStatus.model_validate({"site": self.site, "gateway": self.gateway_id,
                                              "ts": 1, "state": "applied", **fields})
        self.pub.client.publish(self.status_topic, encode(status), qos=1,
                                retain=True).wait_for_publish(5)

    def store_state(self) -> dict[str, Any]:
        path = self.run.service.store.root / "state.json"
        data: dict[str, Any] = json.loads(path.read_text())
        return data


@contextlib.asynccontextmanager
async def live_gateway(tmp_path: Path, broker: Broker,
                       change: Callable[[dict[str, Any]], None] | None = None
                       ) -> AsyncIterator[Live]:
    keys = tmp_path / "keys"
    ops, _ = new_key_pair(keys, "ops")
    other, _ = new_key_pair(keys, "other")
    trusted = public_key_line(public_of(load_private_key(ops)), "ops")

    def prepare(data: dict[str, Any]) -> None:
        data["uplink"] = {"broker": "127.0.0.1", "port": broker.port}
        data["flashing"]["trusted_keys"] = [trusted]
        if change is not None:
            change(data)

    async with running_service(tmp_path, change=prepare) as run:
        gw = run.service.gateway
        set_topic, status_topic, _state = topics(run)
        sub = Subscriber(broker.port, [status_topic])
        pub = Publisher(broker.port)
        try:
            await until(lambda: gw.uplink is not None and gw.uplink.status().subscribed, 15,
                        "uplink connected")
            yield Live(run, broker, ops, other, set_topic, status_topic, sub, pub)
        finally:
            pub.close()
            sub.close()
