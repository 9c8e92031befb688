"""Remote operator commands against a real mosquitto and a real gateway whose siren is a coil
of a simulated relay module (Modbus TCP on loopback): every refusal comes back with its code
and changes nothing (the siren keeps sounding, the fire alarm stays unacknowledged); a
correctly signed acknowledge silences the siren and the journal names the key's owner; an old
acknowledge replayed at a new fire — also after a gateway restart — is refused."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.alarms.lifecycle import AlarmState
from gateway.contract.wire import AlarmCommand, AlarmRef
from tests.fixtures.operators import Keys
from tests.fixtures.services import Broker
from tests.operator.rig import FIRE, OWNER, STROBE, rig


async def test_every_refusal_has_its_code_and_the_siren_keeps_sounding(
        tmp_path: Path, broker: Broker, keys: Keys) -> None:
    async with rig(tmp_path, broker, keys.operators()) as (r, _restart):
        gw = r.gateway_id
        await r.fire(True)
        ref = r.fire_ref()
        now = time.time_ns()
        signed = keys.zhang.sign(gw, site=r.site_id, action="acknowledge", alarms=[ref])
        # (a retained command is refused too: tests/uplink/test_commands.py; a broker hands
        # a live subscriber a retained publish as a plain one, so it is not tried here)
        cases: list[tuple[str, AlarmCommand | bytes]] = [
            ("unsigned", signed.model_copy(update={"signature": None, "key_id": None})),
            ("untrusted_key", keys.stranger.sign(gw, site=r.site_id,
                                                 action="acknowledge", alarms=[ref])),
            ("bad_signature", keys.zhang.sign(gw, site=r.site_id, action="acknowledge", alarms=[
                AlarmRef(rule="fire.smoke_detector", subject="smoke-tx-01.alarm")]
            ).model_copy(update={"alarms": (ref,)})),
            ("bad_signature", keys.zhang.sign(gw, site=r.site_id,
                                              action="acknowledge_all").model_copy(
                update={"room": None, "note": "all of them"})),
            ("expired", keys.zhang.sign(gw, site=r.site_id, action="acknowledge", alarms=[ref],
                                        now_ns=now - 180_000_000_000, lifetime_s=60)),
            ("too_long", keys.zhang.sign(gw, site=r.site_id,
                                         action="shelve", alarm=ref, reason="until 2200",
                                         until=7_258_118_400_000_000_000)),
            ("too_long", keys.zhang.sign(gw, site=r.site_id,
                                         action="suppress", scope="tx-3f", reason="x",
                                         until=now + 8 * 86_400_000_000_000)),
            ("not_permitted", keys.acker.sign(gw, site=r.site_id,
                                              action="shelve", alarm=ref, reason="quiet",
                                              until=now + 3_600_000_000_000)),
            ("not_permitted", keys.acker.sign(gw, site=r.site_id, action="acknowledge_all")),
            ("wrong_gateway", keys.zhang.sign("gw-elsewhere", site=r.site_id, action="acknowledge",
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
        first = keys.zhang.sign(r.gateway_id, site=r.site_id,
                                action="acknowledge", alarms=[r.fire_ref()],
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
        fresh = keys.zhang.sign(r.gateway_id, site=r.site_id,
                                action="acknowledge", alarms=[r.fire_ref()])
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
        unsigned = keys.zhang.sign(r.gateway_id, site=r.site_id,
                                   action="acknowledge", alarms=[r.fire_ref()],
                                   actor="li.wei").model_copy(
            update={"signature": None, "key_id": None})
        r.send(unsigned)
        answer = await r.answer(unsigned.id)
        assert answer.ok and answer.actor == "unsigned-remote"
        await r.coil(False)
        assert r.gateway.core.alarms.get(r.fire_key()).acked_by == "unsigned-remote"
