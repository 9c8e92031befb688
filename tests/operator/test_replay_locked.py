"""A remote acknowledge while another process holds the replay memory's file locked (a backup,
`roomwarden` reading it, a stuck writer): the gateway's event loop goes on polling its buses
(a simulated room on Modbus TCP) while the command's id waits for the disk, nothing is carried
out before the id is written, and once the lock is let go the siren is silenced, once
(DESIGN principles 4 and 13; gateway.operator.command_queue). Before the replay memory's
writes left the loop, the loop stood still for the file's 5 s busy timeout and the command was
refused `unavailable`. A command whose validity ends while it waits is not carried out once
the lock is let go: it is answered `expired`."""

from __future__ import annotations

from pathlib import Path

from gateway.operator import refusals
from tests.fixtures.operators import Keys
from tests.fixtures.services import Broker
from tests.helpers import Locker
from tests.operator.rig import OWNER, SIREN, rig, until


async def test_the_buses_are_polled_while_a_command_waits_for_a_locked_replay_memory(
        tmp_path: Path, broker: Broker, keys: Keys) -> None:
    async with rig(tmp_path, broker, keys.operators()) as (r, _restart):
        await r.fire(True)  # the siren sounds
        uplink = r.gateway.uplink
        assert uplink is not None
        signed = keys.zhang.sign(r.gateway_id, site=r.site_id,
                                 action="acknowledge", alarms=[r.fire_ref()])
        lock = Locker(r.state_dir / "operator" / "commands.sqlite", "EXCLUSIVE")
        try:
            r.send(signed)
            await until(lambda: uplink.status().commands_received == 1, 3.0,
                        "the command at the gateway")
            polled = r.gateway.latest.batches
            await until(lambda: r.gateway.latest.batches >= polled + 3, 4.0,
                        "polls while the command waits for the disk")
            # not carried out, not answered: its id is not on disk yet
            assert r.answers(signed.id) == [] and r.owner_acks() == []
            assert r.site.read_point(SIREN) is True
        finally:
            lock.release()
        answer = await r.answer(signed.id)
        assert answer.ok and answer.actor == OWNER and answer.changed == 1
        await r.coil(False)
        assert len(r.owner_acks()) == 1 and len(r.answers(signed.id)) == 1


async def test_a_command_whose_validity_ends_while_the_memory_is_locked_is_not_carried_out(
        tmp_path: Path, broker: Broker, keys: Keys) -> None:
    """Valid when it arrived, past its `expires` once the lock was let go (held longer than the
    commands' validity, within the file's busy timeout): before, the acknowledge was carried
    out all the same; now both commands are answered `expired` and the siren sounds on."""
    async with rig(tmp_path, broker, keys.operators()) as (r, _restart):
        await r.fire(True)
        uplink = r.gateway.uplink
        assert uplink is not None
        ref = r.fire_ref()
        signed = keys.zhang.sign(r.gateway_id, site=r.site_id, action="acknowledge", alarms=[ref],
                                 lifetime_s=3.0)
        shelve = keys.zhang.sign(r.gateway_id, site=r.site_id,
                                 action="shelve", alarm=ref, reason="noisy",
                                 until=signed.ts + 3_600_000_000_000, lifetime_s=3.0)
        lock = Locker(r.state_dir / "operator" / "commands.sqlite", "EXCLUSIVE")
        try:
            r.send(signed)
            r.send(shelve)  # waits its turn behind the acknowledge's write
            await until(lambda: uplink.status().commands_received == 2, 3.0,
                        "the commands at the gateway")
            expires = max(signed.expires or 0, shelve.expires or 0)
            await until(lambda: r.gateway.clock.now_ns() > expires, 4.0,
                        "the commands' validity over")
            assert r.answers(signed.id) == [] and r.owner_acks() == []
        finally:
            lock.release()
        answer = await r.answer(signed.id)
        assert not answer.ok and answer.code == refusals.EXPIRED, answer
        assert "while it waited" in str(answer.error) and "nothing was carried out" in str(
            answer.error)
        shelved = await r.answer(shelve.id)
        assert not shelved.ok and shelved.code == refusals.EXPIRED, shelved
        await r.still_sounding()  # not acknowledged, not shelved, the siren on
        assert r.owner_acks() == []
        # the acknowledge's id was recorded before it expired: it stays used
        memory = r.gateway.replay_memory()
        seen = memory.seen(signed.key_id or "", signed.id)
        assert seen is not None and seen[1] == refusals.EXPIRED
