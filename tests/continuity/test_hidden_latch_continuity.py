"""A latch taken while hidden survives a restart and a config apply, on the real safety core
of the shipped telecom site (its hydrogen alarm made latching, as a site that wants the
battery room's fan and charge inhibit held until someone resets them would have it) with the
real alarm journal and a manual clock: the hydrogen rises and clears during a hot-work
suppression of the battery room; the fan and the charge inhibit stay on, the siren off,
through a restart of the core (the journal replayed) and a `take_over` (a config apply);
when the suppression ends the alarm is annunciated, and only an acknowledge resets it."""

from __future__ import annotations

from pathlib import Path

from gateway.alarms.lifecycle import AlarmState
from gateway.clock import ManualClock
from gateway.config.section import replaced
from gateway.rules.model import RulePack
from gateway.safety import SafetyCore
from tests import shipped
from tests.continuity.test_safety_core import H2, TELECOM, feed

ROOM = "batt-3f"
HOUR = 3600 * 10**9
OUTPUTS = ("siren-3f", "fan-batt-3f", "charge-inhibit-batt")


def latching_h2() -> dict[str, RulePack]:
    packs = shipped.packs()
    pack = packs["explosion"]
    packs["explosion"] = replaced(pack, rules=tuple(
        replaced(r, latching=True) if r.id == "h2_alarm" else r
        for r in pack.rules))
    return packs


def wanted(core: SafetyCore) -> tuple[bool, ...]:
    return tuple(core.wanted[o] for o in OUTPUTS)


PROTECTING = (False, True, True)


def test_a_hidden_latch_survives_a_restart_and_a_config_apply(tmp_path: Path) -> None:
    site, packs, journal = shipped.site(TELECOM), latching_h2(), tmp_path / "alarms.sqlite"
    clock = ManualClock()
    core = SafetyCore(site, clock, journal, packs=packs)
    feed(core, clock, {"h2-batt-01.h2": 0.0}, 3)
    core.alarms.suppress(ROOM, "site lead", "hot work permit 42", clock.now_ns() + HOUR)
    events = feed(core, clock, {"h2-batt-01.h2": 30.0}, 8)
    assert f"{H2.rule}@{H2.subject} suppressed" in events
    assert wanted(core) == PROTECTING
    feed(core, clock, {"h2-batt-01.h2": 0.0}, 400)  # gone, and past the fan's min_on
    view = core.alarms.get(H2)
    assert (view.state, view.condition, view.hidden_active) == (
        AlarmState.SUPPRESSED, False, True)
    assert wanted(core) == PROTECTING, "latched under the suppression"

    core.close()  # a restart: the journal replayed
    core = SafetyCore(site, clock, journal, packs=packs)
    assert feed(core, clock, {"h2-batt-01.h2": 0.0}, 3) == []
    assert wanted(core) == PROTECTING

    new = SafetyCore(site, clock, journal, packs=packs, open_alarms=False)  # a config apply
    new.take_over(core)
    core.close()
    core = new
    assert feed(core, clock, {"h2-batt-01.h2": 0.0}, 3) == []
    assert core.alarms.get(H2).hidden_active and wanted(core) == PROTECTING

    core.alarms.unsuppress(ROOM, "site lead")
    feed(core, clock, {"h2-batt-01.h2": 0.0}, 1)
    assert core.alarms.get(H2).state is AlarmState.ACTIVE_UNACKNOWLEDGED
    assert wanted(core) == (True, True, True), "annunciated afresh, latched"
    core.alarms.acknowledge([H2], "Li Na", "room checked")  # the reset
    feed(core, clock, {"h2-batt-01.h2": 0.0}, 1)
    assert core.alarms.get(H2).state is AlarmState.NORMAL
    assert wanted(core) == (False, True, False)  # the fan's min_on, counted from the restart
    feed(core, clock, {"h2-batt-01.h2": 0.0}, 300)
    assert wanted(core) == (False, False, False)
    core.close()
