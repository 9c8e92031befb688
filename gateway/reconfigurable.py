"""What a running `gateway.daemon.Gateway` holds of reconfiguring (a mixin): the notes of the
coils a config apply released (`CoilReleases`' callbacks, at rest too), and `reconfigure`,
which imports the apply's own work (gateway.reconfigure) when an apply asks for it: a gateway
at rest does not hold it (issue 15).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from gateway.alarms.events import OUTPUT_RULE, AlarmEvent, EventKind
from gateway.alarms.ledger import COIL_RELEASES

if TYPE_CHECKING:
    from gateway.actions.release import CoilReleases
    from gateway.config.loaded import LoadedConfig
    from gateway.daemon import Gateway
    from gateway.field.bus_loop import BusLoop
    from gateway.safety import SafetyCore


class Reconfiguring:
    """`reconfigure` for `Gateway` (the attributes and methods below are the gateway's)."""

    loaded: LoadedConfig
    core: SafetyCore
    releases: CoilReleases
    bus_loops: list[BusLoop]
    config_version: int

    if TYPE_CHECKING:
        def _hand_on(self, events: list[AlarmEvent]) -> None: ...

        def system_event(self, kind: EventKind, rule: str, subject: str,
                         note: str) -> list[AlarmEvent]: ...

    def _release_note(self, output_id: str, note: str) -> None:
        """A coil an apply released (`CoilReleases`): journalled on its output, sent on. An
        output the config dropped keeps a hold until reset in the journal (a rollback, or a
        later config with it, holds it again): the note says so."""
        if output_id in self.core.alarms.output_holds() \
                and output_id not in self.core.planner.outputs:
            note += ("; its hold until reset stays journalled: a config that drives it again "
                     "switches it on until an operator resets it")
        self.system_event(EventKind.OUTPUT, OUTPUT_RULE, output_id, note)

    def _keep_releases(self, text: str) -> None:
        """The coils released and not yet confirmed off, kept in the alarm journal's meta
        (`AlarmLedger.keep`; gateway.actions.orphans) for the next start."""
        self._hand_on(self.core.alarms.keep(COIL_RELEASES, text))

    def _restore_releases(self) -> None:
        """At a start: the releases the journal kept go on (`CoilReleases.restore`)."""
        self.releases.restore(self.core.alarms.kept(COIL_RELEASES), self.loaded,
                              self.bus_loops, self.config_version)

    async def reconfigure(self, loaded: LoadedConfig, *, version: int,
                          sha256: str) -> None:
        """Run `loaded` from now on: new bus loops, rules and outputs, without a break in any
        alarm (DESIGN principle 7): every alarm in progress carries over through the journal,
        the rule engine's evaluation state (delays, latches, windows, last values) through
        `SafetyCore.take_over`, the output driver's knowledge of each coil it wrote (so
        nothing is written that the alarm states do not change); a coil the old driver may
        have left on and the new config does not drive (an output moved to another coil or
        removed) is switched off through the new bus loops before their first poll, after
        the new config's outputs are written as the alarms in progress want them
        (`CoilReleases`). A rollback (back to the
        config the running one replaced) takes a device the candidate never read from the
        state before the candidate. Raises (and keeps the old config running) if the new
        safety core cannot be built. Health checking and rollback are the caller's job
        (gateway.flashing.apply). The work is gateway.reconfigure's, imported here, at the
        first apply's trial (under a millisecond, before a whole safety core is built)."""
        from gateway.reconfigure import reconfigure

        await reconfigure(cast("Gateway", self), loaded, version=version, sha256=sha256)
