"""An incident still open when the gateway stops is saved as it stands (`interrupted`, with
its samples); one left `open` by a process that died is marked `interrupted` at the next
start."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.config.loader import load_gateway_config
from gateway.daemon import Gateway
from gateway.recorder.store import IncidentStore
from gateway.sim.signals import Constant
from tests.recorder.conftest import FIRE, Rig, fire_recorded, running_rig, until


async def test_a_stop_saves_the_open_incident_and_a_crash_is_marked(rig: Rig) -> None:
    gateway, site = rig.gateway, rig.site
    store = IncidentStore(rig.state_dir / "incidents")
    site.set_signal("smoke-1.alarm", Constant(value=True))
    site.set_signal("smoke-2.alarm", Constant(value=True))
    key = AlarmKey(*FIRE)
    await until(lambda: key in gateway.core.alarms.known()
                and gateway.core.alarms.get(key).state is AlarmState.ACTIVE_UNACKNOWLEDGED)
    await until(lambda: len(store.ids()) == 1)
    [incident_id] = store.ids()
    assert store.load(incident_id)["status"] == "open"
    gateway.request_stop()
    await until(lambda: store.load(incident_id)["status"] == "interrupted")
    record = store.load(incident_id)
    assert record["points"]["smoke-1.alarm"]["v"][-1] is True

    # a record a dead process left open is marked at the next start
    record["status"] = "open"
    store.save(record)
    again = Gateway(load_gateway_config(gateway.loaded.path), state_dir=rig.state_dir)
    try:
        keeper = again.recording.keeper
        assert keeper is not None
        keeper.recovery.result(timeout=20)  # on the keeper's writer thread, not in the start
        assert keeper.recovered == [incident_id]
        assert store.load(incident_id)["status"] == "interrupted"
    finally:
        again.core.close()
    await asyncio.sleep(0)


async def test_a_fire_still_burning_after_a_restart_opens_a_record_again(tmp_path: Path) -> None:
    """The incident audit: a restart in the middle of a fire (a power cut, an upgrade) ended
    its record as `interrupted`, and the fire — still active, restored from the journal —
    opened none after it: a record opens only at an activation. The alarm active at the start
    opens a record that says it continues the interrupted one."""
    async with running_rig(tmp_path) as rig:
        store, first = await fire_recorded(rig)
    assert store.load(first)["status"] == "interrupted"
    async with running_rig(tmp_path) as rig:  # the same state directory: a restart
        key = AlarmKey(*FIRE)
        assert rig.gateway.core.alarms.get(key).state is AlarmState.ACTIVE_UNACKNOWLEDGED
        rig.site.set_signal("smoke-1.alarm", Constant(value=True))
        rig.site.set_signal("smoke-2.alarm", Constant(value=True))
        await until(lambda: len(store.ids()) == 2)
        [second] = [i for i in store.ids() if i != first]
        assert "-tx.resumed-" in second  # its own id, even in the interrupted one's second
        record = store.load(second)
        assert record["status"] == "open"
        assert record["trigger"]["rule"] == FIRE[0]
        assert "continues the one it interrupted" in record["trigger"]["note"]
        await until(lambda: len(store.load(second)["points"]["smoke-1.alarm"]["v"]) > 0)
