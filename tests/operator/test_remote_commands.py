"""Remote operator commands against a real mosquitto and a real gateway whose siren is a coil
of a simulated relay module (Modbus TCP on loopback): every refusal comes back with its code
and changes nothing (the siren keeps sounding, the fire alarm stays unacknowledged); a
correctly signed acknowledge silences the siren and the journal names the key's owner; an old
acknowledge replayed at a new fire — also after a gateway restart — is refused."""

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
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.config.loader import load_gateway_config
from gateway.daemon import Gateway
from gateway.sim.signals import Constant
from gateway.sim.site import SimulatedSite
from gateway.uplink.contract import (
    AlarmCommand,
    AlarmRef,
    CommandResult,
    Message,
    decode,
    encode,
)
from gateway.uplink.settings import UplinkSettings
from tests.fixtures.operators import Keys
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
    await until(lambda: gateway.uplink is not None and gateway.uplink.status().connected,
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
async def rig(tmp_path: Path, broker: Broker, operators: dict[str, Any]
              ) -> AsyncIterator[tuple[Rig, Callable[[], Any]]]:
    """Yields the rig and `restart()`: stop the gateway cleanly and start a new one on the
    same state directory (a new process would find the same files)."""
    async with SimulatedSite(load_gateway_config(SITE_CONFIG)) as site:
        loaded = load_gateway_config(site.write_config(tmp_path / "sim.yaml"))
        cfg = loaded.config
        uplink = UplinkSettings.model_validate(
            {"broker": "127.0.0.1", "port": broker.port, "reconnect_min": "100ms",
             "reconnect_max": "500ms"})
        config = cfg.model_copy(update={
            "uplink": uplink, "panel": cfg.panel.model_copy(update={"enabled": False}),
            "operators": type(cfg.operators).model_validate(operators)})
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


async def test_every_refusal_has_its_code_and_the_siren_keeps_sounding(
        tmp_path: Path, broker: Broker, keys: Keys) -> None:
    async with rig(tmp_path, broker, keys.operators()) as (r, _restart):
        gw = r.gateway_id
        await r.fire(True)
        ref = r.fire_ref()
        now = time.time_ns()
        signed = keys.zhang.sign(gw, action="acknowledge", alarms=[ref])
        # (a retained command is refused too: tests/uplink/test_commands.py; a broker hands
        # a live subscriber a retained publish as a plain one, so it is not tried here)
        cases: list[tuple[str, AlarmCommand | bytes]] = [
            ("unsigned", signed.model_copy(update={"signature": None, "key_id": None})),
            ("untrusted_key", keys.stranger.sign(gw, action="acknowledge", alarms=[ref])),
            ("bad_signature", keys.zhang.sign(gw, action="acknowledge", alarms=[
                AlarmRef(rule="fire.smoke_detector", subject="smoke-tx-01.alarm")]
            ).model_copy(update={"alarms": (ref,)})),
            ("bad_signature", keys.zhang.sign(gw, action="acknowledge_all").model_copy(
                update={"room": None, "note": "all of them"})),
            ("expired", keys.zhang.sign(gw, action="acknowledge", alarms=[ref],
                                        now_ns=now - 180_000_000_000, lifetime_s=60)),
            ("too_long", keys.zhang.sign(gw, action="shelve", alarm=ref, reason="until 2200",
                                         until=7_258_118_400_000_000_000)),
            ("too_long", keys.zhang.sign(gw, action="suppress", scope="tx-3f", reason="x",
                                         until=now + 8 * 86_400_000_000_000)),
            ("not_permitted", keys.acker.sign(gw, action="shelve", alarm=ref, reason="quiet",
                                              until=now + 3_600_000_000_000)),
            ("not_permitted", keys.acker.sign(gw, action="acknowledge_all")),
            ("wrong_gateway", keys.zhang.sign("gw-elsewhere", action="acknowledge",
                                              alarms=[ref])),
            ("malformed", b'{"v": 1, "id": "no-alarms", "action": "acknowledge"}'),
        ]
        for code, payload in cases:
            cid = payload.id if not isinstance(payload, bytes) else "no-alarms"
            r.send(payload)
            answer = await r.answer(cid)
            assert not answer.ok and answer.code == code, (code, answer)
            assert answer.error
            await r.still_sounding()
        assert r.owner_acks() == []

        # and the same acknowledge, signed and intact, is carried out (its unsigned copy,
        # refused first, did not use up its id)
        r.send(signed)
        answer = await r.answer(signed.id, 2)
        assert answer.ok and answer.actor == OWNER and answer.changed == 1
        await r.coil(False)
        assert r.site.read_point(STROBE) is True  # the strobe stays while the fire is there
        assert len(r.owner_acks()) == 1
        uplink = r.gateway.uplink
        assert uplink is not None
        status = uplink.status()
        assert status.commands_received == len(cases) + 1
        assert status.commands_refused + status.commands_bad == len(cases)


async def test_a_signed_acknowledge_silences_and_its_replay_never_does(
        tmp_path: Path, broker: Broker, keys: Keys) -> None:
    async with rig(tmp_path, broker, keys.operators()) as (r, restart):
        await r.fire(True)
        first = keys.zhang.sign(r.gateway_id, action="acknowledge", alarms=[r.fire_ref()],
                                note="on my way", lifetime_s=600)
        r.send(first)
        answer = await r.answer(first.id)
        assert answer.ok and answer.actor == OWNER
        await r.coil(False)
        # the journal (SQLite, read back) names the key's owner, never the payload's actor
        acks = [e for e in r.gateway.core.alarms.events_since(0)
                if e.rule == FIRE and e.state is AlarmState.ACTIVE_ACKNOWLEDGED]
        assert [(e.actor, e.note) for e in acks] == [(OWNER, "on my way")]

        # the fire is out (the latched alarm reset on the panel), then back: an old
        # acknowledge replayed must not silence the new one
        await r.fire(False)
        await r.out()
        await r.fire(True)
        r.send(first)
        replay = await r.answer(first.id, 2)
        assert not replay.ok and replay.code == "replayed"
        await r.still_sounding()

        await restart()  # a clean stop and a new gateway: the replay memory is on disk
        await r.fire(True)
        r.send(first)
        after = await r.answer(first.id, 3)
        assert not after.ok and after.code == "replayed", after
        await r.still_sounding()
        fresh = keys.zhang.sign(r.gateway_id, action="acknowledge", alarms=[r.fire_ref()])
        r.send(fresh)
        assert (await r.answer(fresh.id)).ok
        await r.coil(False)


async def test_lab_mode_takes_unsigned_commands_and_says_so(
        tmp_path: Path, broker: Broker, keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    from gateway.ops.health import monitor_for

    caplog.set_level("WARNING", logger="roomwarden.daemon")
    async with rig(tmp_path, broker, keys.operators(allow_unsigned=True)) as (r, _restart):
        assert any("event=unsigned_commands_allowed" in rec.getMessage()
                   for rec in caplog.records)
        uplink_check = monitor_for(r.gateway).check().checks["uplink"]
        assert uplink_check.status == "degraded" and "unsigned" in uplink_check.detail
        await r.fire(True)
        unsigned = keys.zhang.sign(r.gateway_id, action="acknowledge", alarms=[r.fire_ref()],
                                   actor="li.wei").model_copy(
            update={"signature": None, "key_id": None})
        r.send(unsigned)
        answer = await r.answer(unsigned.id)
        assert answer.ok and answer.actor == "unsigned-remote"
        await r.coil(False)
        assert r.gateway.core.alarms.get(r.fire_key()).acked_by == "unsigned-remote"
