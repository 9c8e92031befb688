"""A simulated room (its siren a coil of a simulated relay module on Modbus TCP), a real
gateway on it with an uplink to a real mosquitto, a central sender on `cmd` and a subscriber on
`cmd/result`: the bench of tests/operator."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.config.loader import load_gateway_config
from gateway.config.section import replaced, validator
from gateway.contract.wire import AlarmRef, CommandResult, Message, decode, encode
from gateway.daemon import Gateway
from gateway.sim.signals import Constant
from gateway.sim.site import SimulatedSite
from gateway.uplink.settings import UplinkSettings
from tests.fixtures.services import Broker, Subscriber

REPO = Path(__file__).resolve().parents[2]
SITE_CONFIG = REPO / "firmware_configs" / "telecom_equipment_room.yaml"
SIREN, STROBE = "do-tx-01.do1", "do-tx-01.do2"
FIRE = "fire.smoke_coincidence"
SMOKE = ("smoke-tx-01.alarm", "smoke-tx-02.alarm")
OWNER = "Zhang Wei (NOC)"


async def until(pred: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what or pred}"
        await asyncio.sleep(0.02)


@dataclass
class Rig:
    """A simulated room, a gateway on it with an uplink to the broker, a central sender and a
    subscriber on `cmd/result`."""

    site: SimulatedSite
    gateway: Gateway
    gateway_id: str
    prefix: str
    sub: Subscriber
    sender: mqtt.Client
    state_dir: Path

    @property
    def site_id(self) -> str:
        """The gateway's site (what a command signed for it names)."""
        return self.prefix.split("/")[1]

    def send(self, payload: Message | bytes, *, retain: bool = False) -> None:
        data = payload if isinstance(payload, bytes) else encode(payload)
        info = self.sender.publish(self.prefix + "cmd", data, qos=1, retain=retain)
        info.wait_for_publish(5)
        assert info.is_published()

    def answers(self, cid: str) -> list[CommandResult]:
        out = []
        for m in self.sub.snapshot(lambda m: m.topic == self.prefix + "cmd/result"):
            result = decode(m.topic, m.payload)
            assert isinstance(result, CommandResult)
            if result.id == cid:
                out.append(result)
        return out

    async def answer(self, cid: str, count: int = 1) -> CommandResult:
        await until(lambda: len(self.answers(cid)) >= count, what=f"the answer to {cid}")
        return self.answers(cid)[count - 1]

    def fire_key(self) -> AlarmKey:
        return next(v.key for v in self.gateway.core.alarms.active() if v.key.rule == FIRE)

    def fire_ref(self) -> AlarmRef:
        key = self.fire_key()
        return AlarmRef(rule=key.rule, subject=key.subject)

    async def coil(self, value: bool) -> None:
        await until(lambda: self.site.read_point(SIREN) is value, what=f"siren {value}")

    async def fire(self, on: bool) -> None:
        for point in SMOKE:
            self.site.set_signal(point, Constant(value=on))
        if on:
            await until(lambda: any(v.key.rule == FIRE and v.state is
                                    AlarmState.ACTIVE_UNACKNOWLEDGED
                                    for v in self.gateway.core.alarms.active()), what="fire")
            await self.coil(True)

    async def out(self) -> None:
        """Wait for the fire's condition to clear; reset the latched alarm as a logged-in
        panel user would (the local path of the same OperatorCommands)."""
        key = self.fire_key()
        await until(lambda: not self.gateway.core.alarms.get(key).condition, what="clear")
        if self.gateway.core.alarms.get(key).acknowledgeable:
            self.gateway.acknowledge([AlarmRef(rule=key.rule, subject=key.subject)], "ops",
                                     "reset after the drill")
        await until(lambda: not any(v.key.rule == FIRE
                                    for v in self.gateway.core.alarms.active()),
                    what="fire over")

    def owner_acks(self) -> list[Any]:
        return [e for e in self.gateway.core.alarms.events_since(0)
                if e.rule == FIRE and e.actor == OWNER]

    async def still_sounding(self) -> None:
        """Nothing changed: the fire alarm waits for an acknowledgement, unshelved, and the
        siren is wanted and on."""
        view = self.gateway.core.alarms.get(self.fire_key())
        assert view.state is AlarmState.ACTIVE_UNACKNOWLEDGED and view.shelf is None
        assert view.acked_by is None
        assert self.gateway.core.wanted.get("siren-3f") is True
        await asyncio.sleep(0.3)  # a write would have reached the coil by now
        assert self.site.read_point(SIREN) is True


async def start(loaded: Any, state_dir: Path) -> tuple[Gateway, asyncio.Task[None]]:
    gateway = Gateway(loaded, state_dir=state_dir)
    task = asyncio.create_task(gateway.run())
    await until(lambda: gateway.uplink is not None and gateway.uplink.status().subscribed,
                what="uplink connected")
    return gateway, task


async def stop(gateway: Gateway, task: asyncio.Task[None]) -> None:
    """A clean stop (SIGTERM): outputs to their stop state, outbox and journal closed."""
    gateway.request_stop()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.shield(task), 20)
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def rig(tmp_path: Path, broker: Broker, operators: dict[str, Any],
              site_config: Path = SITE_CONFIG
              ) -> AsyncIterator[tuple[Rig, Callable[[], Any]]]:
    """Yields the rig and `restart()`: stop the gateway cleanly and start a new one on the
    same state directory (a new process would find the same files). `site_config`: another
    shipped site than the telecom room (its helpers for the fire then do not apply)."""
    async with SimulatedSite(load_gateway_config(site_config)) as site:
        loaded = load_gateway_config(site.write_config(tmp_path / "sim.yaml"))
        cfg = loaded.config
        uplink = validator(UplinkSettings).validate_python(
            {"broker": "127.0.0.1", "port": broker.port, "reconnect_min": "100ms",
             "reconnect_max": "500ms"})
        config = replaced(cfg, uplink=uplink, panel=replaced(cfg.panel, enabled=False),
                          operators=validator(type(cfg.operators)).validate_python(operators))
        loaded = dataclasses.replace(loaded, config=config)
        prefix = f"roomwarden/{cfg.gateway.site}/{cfg.gateway.id}/"
        sub = Subscriber(broker.port, prefix + "cmd/result")
        sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"noc-{time.time_ns()}")
        sender.connect("127.0.0.1", broker.port, keepalive=10)
        sender.loop_start()
        state_dir = tmp_path / "state"
        gateway, task = await start(loaded, state_dir)
        r = Rig(site, gateway, cfg.gateway.id, prefix, sub, sender, state_dir)

        async def restart() -> None:
            nonlocal task
            await stop(r.gateway, task)
            r.gateway, task = await start(loaded, state_dir)

        try:
            yield r, restart
        finally:
            await stop(r.gateway, task)
            sender.disconnect()
            sender.loop_stop()
            sub.close()
