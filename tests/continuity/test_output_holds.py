"""An output that does not restore on clear (`restore_on_clear: false`) — the lithium ESS
room's charge inhibit — on the real safety core of the shipped datacenter site, fed by its
simulated devices on a manual clock: a real off-gas alarm holds it on after it cleared, the
hold is journalled (rule `$output`) and survives a restart of the core (a SIGKILL leaves the
same journal), an operator's reset through `OperatorCommands` — the service behind the panel
and `cmd` — releases it at once and is journalled with the operator's name and note, and a
journalled reset does not come back after a restart. Unknown and not-held outputs are
refused with a reason; a reset while the alarm still demands the output leaves it on for
that alarm only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.alarms.events import OUTPUT_RULE, AlarmEvent
from gateway.operator.commands import OperatorCommands
from gateway.operator.refusals import NOT_APPLICABLE, Refused
from gateway.safety import SafetyCore
from gateway.sim.signals import Constant
from tests.fixtures.core_rig import CoreRig

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "datacenter_lithium_room.yaml"
INHIBIT = "charge-inhibit-ess"
OFFGAS = "offgas-ess-01.co"


class Rig(CoreRig):
    """The safety core on a manual clock, polled and driven as the daemon does, with the
    daemon's OperatorCommands (re-plan after a command, as `Gateway._after_command`)."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(SITE, tmp / "alarms.sqlite")
        self.commands = self._commands()

    def _commands(self) -> OperatorCommands:
        def after(events: list[AlarmEvent]) -> None:
            self.core.plan_outputs()
            self.site.drive(self.core.wanted)
            self.events += [*events, *self.core.take_output_events()]

        return OperatorCommands(lambda: self.core.alarms, self.clock, after,
                                planner=lambda: self.core.planner)

    def offgas(self, ppm: float) -> None:
        self.site.signals.set(OFFGAS, Constant(value=ppm))

    def restart(self) -> None:
        """A new core on the same journal, as a new process finds it (after a SIGKILL the
        journal is what was committed: every call commits before it returns)."""
        self.core.close()
        self.core = SafetyCore(self.loaded, self.clock, self.journal)
        self.commands = self._commands()

    def output_events(self) -> list[AlarmEvent]:
        return [e for e in self.core.alarms.events_since(0) if e.rule == OUTPUT_RULE]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    r.run(5)  # every device read once
    yield r
    r.core.close()


def held_after_an_offgas_alarm(r: Rig) -> None:
    r.offgas(120.0)
    r.run(15)
    assert r.core.wanted[INHIBIT]
    r.offgas(0.0)
    r.run(15)
    assert r.core.wanted[INHIBIT], "restore_on_clear: false holds it"
    assert r.core.planner.state[INHIBIT].reasons == ["held until reset"]


def test_a_hold_is_journalled_once_and_survives_a_restart(rig: Rig) -> None:
    held_after_an_offgas_alarm(rig)
    holds = rig.output_events()
    assert [(e.subject, e.actor) for e in holds] == [(INHIBIT, "system")]
    assert holds[0].note is not None and holds[0].note.startswith("held until reset")
    assert holds[0].room == "ess-a1" and holds[0].severity is None
    assert any(e.rule == OUTPUT_RULE for e in rig.events), "handed on as the round's events"

    rig.restart()
    assert rig.core.planner.state[INHIBIT].held_by_reset, "restored from the journal"
    rig.run(1)
    assert rig.core.wanted[INHIBIT], "on again at once, until an operator resets it"
    assert rig.core.planner.state[INHIBIT].reasons == ["held until reset"]
    assert len(rig.output_events()) == 1, "the restored hold is not journalled again"


def test_an_operator_reset_releases_it_is_journalled_and_stays_released(rig: Rig) -> None:
    held_after_an_offgas_alarm(rig)
    done = rig.commands.reset_output(INHIBIT, "Li Na", "cells checked, PCS cleared")
    assert done.still_on_for == () and done.message == f"output {INHIBIT} released"
    assert not rig.core.wanted[INHIBIT], "released within the same call"
    last = rig.output_events()[-1]
    assert (last.subject, last.actor, last.note) == (
        INHIBIT, "Li Na", "reset: cells checked, PCS cleared")
    assert rig.events[-1] == last, "handed on like any journal event"

    rig.restart()
    assert not rig.core.planner.state[INHIBIT].held_by_reset
    rig.run(2)
    assert not rig.core.wanted[INHIBIT], "a journalled reset does not come back"


def test_unknown_and_not_held_outputs_are_refused_with_a_reason(rig: Rig) -> None:
    with pytest.raises(Refused, match="unknown output 'nowhere'") as unknown:
        rig.commands.reset_output("nowhere", "Li Na", None)
    assert unknown.value.code == NOT_APPLICABLE
    with pytest.raises(Refused, match=f"output {INHIBIT} is not held until reset"):
        rig.commands.reset_output(INHIBIT, "Li Na", None)
    with pytest.raises(Refused, match="restores on clear"):
        rig.commands.reset_output("siren-ess", "Li Na", None)
    assert rig.output_events() == [], "a refusal journals nothing"


def test_a_reset_while_the_alarm_is_active_releases_the_hold_but_not_the_output(
        rig: Rig) -> None:
    rig.offgas(120.0)
    rig.run(15)
    assert rig.core.planner.state[INHIBIT].held_by_reset
    done = rig.commands.reset_output(INHIBIT, "Li Na", None)
    assert done.still_on_for and "stays on while" in done.message
    assert rig.core.wanted[INHIBIT], "the off-gas alarm still demands it"
    note = rig.output_events()[-1].note or ""
    assert note.startswith("reset; stays on while explosion.")
    rig.offgas(0.0)
    rig.run(15)
    assert not rig.core.wanted[INHIBIT], "off once that alarm cleared: no hold came back"
    rig.restart()
    rig.run(2)
    assert not rig.core.wanted[INHIBIT]
