"""A remote acknowledge while another process holds the replay memory's file locked (a backup,
`roomwarden` reading it, a stuck writer): the gateway's event loop goes on polling its buses
(a simulated room on Modbus TCP) while the command's id waits for the disk, nothing is carried
out before the id is written, and once the lock is let go the siren is silenced, once
(DESIGN principles 4 and 13; gateway.operator.command_queue). Before the replay memory's
writes left the loop, the loop stood still for the file's 5 s busy timeout and the command was
refused `unavailable`."""

from __future__ import annotations

from pathlib import Path

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
        signed = keys.zhang.sign(r.gateway_id, action="acknowledge", alarms=[r.fire_ref()])
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
