"""An apply that drops a rule under its active alarm, on the running gateway service (the object
`roomwarden run` uses) polling the simulated telecom site, applied through the control socket
(`roomwarden config apply`) — the alarm lifecycle audit, F4.

- committed: the critical hydrogen alarm of the disabled rule returns to normal once the config
  is committed (one system event after the `$config` one), and the charge inhibit and siren it
  held on are switched off;
- rolled back (the candidate fails its health check): the alarm is as it was — same state and
  activation time, no event, its coils never written off — and its rule judges it again."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.alarms.events import SYSTEM_ACTOR
from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.sim.signals import Constant
from tests.apply.conftest import Running, ask, device, edit_config, running, until

__all__ = ["running"]  # fixture

H2 = AlarmKey("explosion.h2_alarm", "h2-batt-01.h2")
SIREN, CHARGE_INHIBIT = "do-tx-01.do1", "do-tx-01.do4"


def disable_h2_alarm(data: dict[str, Any]) -> None:
    data.setdefault("rules", {})["disabled"] = ["explosion.h2_alarm"]


async def raise_h2(running: Running) -> int:
    """Hydrogen at 30 %LEL until the critical alarm is on with its coils; its activation."""
    gw, site = running.service.gateway, running.site
    site.set_signal("h2-batt-01.h2", Constant(value=30.0))
    await until(lambda: H2 in {v.key for v in gw.core.alarms.active()}
                and site.read_point(CHARGE_INHIBIT) is True and site.read_point(SIREN) is True,
                20, "the hydrogen alarm on, charging inhibited, the siren on")
    since = gw.core.alarms.get(H2).activated_ns
    assert since is not None
    return since


async def test_a_committed_apply_that_disables_the_rule_returns_its_alarm_to_normal(
        running: Running) -> None:
    gw, site = running.service.gateway, running.site
    await raise_h2(running)
    seq = gw.core.alarms.last_seq
    answers = await ask(running.control, {"op": "apply", "author": "erin",
                                          "config": edit_config(running.text, disable_h2_alarm)})
    assert answers[-1]["result"]["state"] == "applied", answers[-1]
    assert H2 not in gw.core.alarms.known()  # at the commit, before the answer
    await until(lambda: site.read_point(CHARGE_INHIBIT) is False
                and site.read_point(SIREN) is False, 10, "charging and the siren released")
    events = gw.core.alarms.events_since(seq)
    mine = [(e.rule, e.previous_state, e.state, e.actor, e.note) for e in events
            if (e.rule, e.subject) in (H2, ("$config", "v1"))]
    assert mine == [
        ("$config", AlarmState.NORMAL, AlarmState.NORMAL, SYSTEM_ACTOR, mine[0][4]),
        (H2.rule, AlarmState.ACTIVE_UNACKNOWLEDGED, AlarmState.NORMAL, SYSTEM_ACTOR,
         "returned: no longer in the config (v1)")], mine
    assert str(mine[0][4]).startswith("config v1 applied")


async def test_a_rolled_back_apply_that_disabled_the_rule_leaves_its_alarm_as_it_was(
        running: Running) -> None:
    gw, site = running.service.gateway, running.site
    since = await raise_h2(running)
    seq = gw.core.alarms.last_seq
    dropped: list[str] = []

    async def watch() -> None:  # neither coil may drop while the config is tried and undone
        while True:
            dropped.extend(p for p in (SIREN, CHARGE_INHIBIT) if site.read_point(p) is not True)
            await asyncio.sleep(0.01)

    def disabled_and_unreachable(data: dict[str, Any]) -> None:
        disable_h2_alarm(data)
        device(data, "th-tx-a03")["unit"] = 99  # nothing answers there: the trial fails

    watcher = asyncio.create_task(watch())
    try:
        answers = await ask(running.control, {"op": "apply", "author": "erin", "config":
                                              edit_config(running.text,
                                                          disabled_and_unreachable)})
        assert answers[-1]["result"]["state"] == "rolled_back", answers[-1]
        rounds = gw.evaluations
        await until(lambda: gw.evaluations >= rounds + 2, 20, "rounds of the config back")
    finally:
        watcher.cancel()
    assert dropped == []
    view = gw.core.alarms.get(H2)
    assert view.state is AlarmState.ACTIVE_UNACKNOWLEDGED and view.activated_ns == since
    assert [e for e in gw.core.alarms.events_since(seq) if (e.rule, e.subject) == H2] == []
    # its rule judges it again: the hydrogen gone, it returns
    site.set_signal("h2-batt-01.h2", Constant(value=0.0))
    await until(lambda: gw.core.alarms.get(H2).state is AlarmState.RETURNED_UNACKNOWLEDGED,
                20, "the alarm returned by good data")
