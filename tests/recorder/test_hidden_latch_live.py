"""A confirmed fire's latch, shelved, keeps its room's incident open in the real gateway.

The fire alarm latches (edge_rules/fire.yaml). Acknowledged while the detectors still alarm,
then shelved (the fire service is on site), it stays latched when the detectors clear: hidden
from the alarm list, its protective outputs still driven, until someone resets it. The room's
incident follows the hazard, not what the operator sees: it stays open past `post` after the
detectors cleared, and closes after the reset — before the incident's cap, so the reset ended
it (gateway.recorder.hook `room_active` counts such a hidden latch as active). The keeper looks
at the room every `COPY_EVERY` seconds: the test waits for a look that extends the incident
under the hidden latch (on 59851bd, before hidden latches counted, that look closed it)."""

from __future__ import annotations

from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.contract.wire import AlarmRef
from gateway.recorder.incidents import COPY_EVERY
from gateway.sim.signals import Constant
from tests.recorder.conftest import FIRE, MAX_DURATION, POST, Rig, fire_recorded, until

DETECTOR = "fire.smoke_detector"


async def test_a_shelved_latched_fire_keeps_its_incident_open_until_reset(rig: Rig) -> None:
    gateway, site = rig.gateway, rig.site
    key, ref = AlarmKey(*FIRE), AlarmRef(rule=FIRE[0], subject=FIRE[1])
    store, incident_id = await fire_recorded(rig)
    await until(lambda: gateway.core.alarms.get(key).state is AlarmState.ACTIVE_UNACKNOWLEDGED)
    assert gateway.acknowledge([ref], "alice", "fire service called") == 1
    detectors = [v.key for v in gateway.core.alarms.active() if v.key.rule == DETECTOR]
    assert len(detectors) == 2
    assert gateway.acknowledge([AlarmRef(rule=k.rule, subject=k.subject) for k in detectors],
                               "alice", None) == 2
    gateway.shelve(ref, "alice", 10, "fire service on site")

    site.set_signal("smoke-1.alarm", Constant(value=False))
    site.set_signal("smoke-2.alarm", Constant(value=False))
    await until(lambda: not any(v.key.rule == DETECTOR for v in gateway.core.alarms.active()))
    fire = gateway.core.alarms.get(key)
    assert fire.hidden_active and fire.state is AlarmState.SHELVED  # the hidden latch
    cleared = gateway.clock.now_ns()

    # nothing the operator sees is active in the room now; the latch still is, and the
    # keeper's next look extends the incident past `post` after the detectors cleared
    keeper = gateway.recording.keeper
    assert keeper is not None
    extended = cleared + int(POST * 1e9)
    await until(lambda: "tx" not in keeper.open or keeper.open["tx"].end_ns > extended,
                3 * COPY_EVERY)
    assert store.load(incident_id)["status"] == "open", "closed under a hidden latch"

    gateway.unshelve(ref, "alice")
    assert gateway.reset_alarm(ref, "alice", "room checked, detectors reset") == 1
    await until(lambda: gateway.core.alarms.get(key).state is AlarmState.NORMAL)
    await until(lambda: store.load(incident_id)["status"] == "closed", 30)
    record = store.load(incident_id)
    trigger_ns = record["trigger"]["ts"]
    assert record["until_ns"] > extended  # it outlived the detectors' clearing
    assert record["until_ns"] < trigger_ns + MAX_DURATION * 1e9  # the reset ended it, not the cap
