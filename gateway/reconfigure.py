"""Running another config without a break in any alarm: `Gateway.reconfigure` (a mixin of
`gateway.daemon.Gateway`, driven by gateway.flashing.apply) — new bus loops, rules and outputs;
the alarms carried through the journal, the rules' evaluation state through
`SafetyCore.take_over`, the output driver's knowledge of each coil (`carry_output_states`);
a coil the new config no longer drives switched off (`gateway.actions.release`); the uplink
and the panel restarted only when their settings changed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.actions.driver import OutputDriver
from gateway.actions.release import CoilReleases
from gateway.alarms.events import OUTPUT_RULE, AlarmEvent, EventKind
from gateway.alarms.ledger import COIL_RELEASES
from gateway.clock import Clock
from gateway.config.loader import LoadedConfig
from gateway.evaluator import Evaluator
from gateway.field.bus_loop import BusLoop
from gateway.field.buses import build_bus_loops
from gateway.field.catalog import catalog_points
from gateway.field.latest import LatestSamples
from gateway.field.sample import Sample
from gateway.heap import trim
from gateway.safety import SafetyCore, acquisition
from gateway.service.watchdog import configure_stall_limits

if TYPE_CHECKING:
    from pathlib import Path

    from gateway.handoff import AlarmHandOn
    from gateway.panel.server import PanelServer
    from gateway.uplink.publisher import Uplink

log = logging.getLogger("roomwarden.daemon")

JOURNAL_SETTLE = 5.0
"""A config apply waits at most this long for the alarm journal to write what the running core
handed it (the new core's alarm manager reads the file; its writer thread writes in
milliseconds unless another process holds the file's lock)."""


def _collect_replaced() -> float:
    """Free what the replaced config left (ms taken): its bus loops, pollers and tasks are
    reference cycles (a task and its coroutine, a loop and its pollers' callbacks), which only a
    full collection frees, and with the service's young threshold (10,000:
    gateway.supervisor) those came rarely — the churn soak saw each apply keep ~0.6 MiB, RSS
    +10 MiB after 15 applies at 200 points, until one came. One full collection per apply
    (rare, and the apply itself builds a whole safety core) frees them at once."""
    began = time.perf_counter()
    gc.collect()
    trim()  # what the collection freed, back to the kernel (gateway.heap)
    return (time.perf_counter() - began) * 1000


def carry_output_states(driver: OutputDriver, previous: OutputDriver, loaded: LoadedConfig,
                        previous_loaded: LoadedConfig) -> None:
    """What the previous driver knows of each coil it wrote, for the outputs that are the same
    coil in both configs: the new driver writes only what changes. A write that was in flight
    when the old bus loops stopped left the coil unknown: it is written again."""
    for output_id, state in previous.state.items():
        output = driver.outputs.get(output_id)
        if output is None or output_id not in driver.state \
                or previous.outputs.get(output_id) != output \
                or acquisition(loaded, output.device) != acquisition(previous_loaded,
                                                                     output.device):
            continue
        carried = dataclasses.replace(state, pending=False)
        if state.pending:
            carried.commanded = None
        driver.state[output_id] = carried


class Reconfiguring:
    """`reconfigure` for `Gateway` (the attributes and methods below are the gateway's)."""

    loaded: LoadedConfig
    clock: Clock
    core: SafetyCore
    driver: OutputDriver
    releases: CoilReleases
    latest: LatestSamples
    bus_loops: list[BusLoop]
    evaluator: Evaluator
    uplink: Uplink | None
    panel: PanelServer | None
    panel_port: int | None
    panel_ready: asyncio.Event
    journal_path: Path
    rules_dir: Path | None
    config_version: int
    config_sha256: str
    reconfigurations: int
    _reconfigure_lock: asyncio.Lock
    _replaced_core: SafetyCore | None
    _loop_tasks: list[asyncio.Task[None]]
    _group: asyncio.TaskGroup | None
    _uplink_task: asyncio.Task[None] | None
    _panel_task: asyncio.Task[None] | None
    _on_samples: Callable[[list[Sample]], None]
    handoff: AlarmHandOn

    if TYPE_CHECKING:
        def _start_loops(self) -> None: ...

        def _make_uplink(self, loaded: LoadedConfig) -> Uplink | None: ...

        def _make_panel(self, loaded: LoadedConfig) -> PanelServer | None: ...

        def _hand_on(self, events: list[AlarmEvent]) -> None: ...

        async def _serve_panel(self) -> None: ...

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
        (gateway.flashing.apply)."""
        async with self._reconfigure_lock:
            core = SafetyCore(loaded, self.clock, self.journal_path, rules_dir=self.rules_dir,
                              open_alarms=False, config_version=version)
            loops = build_bus_loops(loaded, self._on_samples, self.clock)
            configure_stall_limits(loaded, loops)
            old_tasks = self._loop_tasks
            for task in old_tasks:
                task.cancel()
            await asyncio.gather(*old_tasks, return_exceptions=True)  # ports closed
            if not await self.core.journal.settled(JOURNAL_SETTLE):  # the new core reads it
                log.warning("event=alarm_journal_unwritten_at_apply events=%d error=%r",
                            self.core.journal.pending_events, self.core.journal.last_error)
            # from here to the swap nothing awaits: the old core has stopped writing the
            # journal, and the new one takes over exactly where it stands
            old_core, old_loaded, old_driver = self.core, self.loaded, self.driver
            old_loops = self.bus_loops
            earlier = self._replaced_core
            if earlier is not None and earlier.loaded.config != loaded.config:
                earlier = None  # only a rollback (or revert) looks further back
            carried, held = core.take_over(old_core, earlier)
            self.loaded, self.core, self.bus_loops = loaded, core, loops
            self.driver = OutputDriver(loaded, loops, self.latest, self.clock)
            carry_output_states(self.driver, old_driver, loaded, old_loaded)
            # queued before the new loops' first poll: what the alarms in progress want (a
            # moved siren's new relay on), then the coils no output drives any more off —
            # make before break on a shared line
            self.driver.apply(core.plan_outputs())
            self.releases.release(old_driver.state, old_loaded, old_loops, loaded, loops,
                                  version)
            self.config_version, self.config_sha256 = version, sha256
            old_core.close()
            # a rollback leaves nothing to look back to: the failed candidate's core (rules'
            # state for every binding it had) is let go, not kept until the next apply
            self._replaced_core = None if earlier is not None else old_core
            log.info("event=rule_state_carried bindings=%d carried=%d held=%d rollback=%s",
                     len(core.engine.bindings()), carried, held, earlier is not None)
            if self._group is not None:
                self._start_loops()
            await self._reconfigure_uplink(old_loaded, loaded)
            if self.uplink is not None:
                self.uplink.set_config_identity(version, sha256)
            await self._reconfigure_panel(old_loaded, loaded)
            self.reconfigurations += 1
            self.evaluator.owe()  # the new rules' first round evaluates everything
            bindings = core.engine.bindings()
            del old_tasks, old_driver, old_loops  # the replaced loops' last holders here
            collect_ms = _collect_replaced()
            log.info("event=gateway_reconfigured version=%d sha256=%s buses=%d devices=%d "
                     "rules=%d bindings=%d gc_ms=%.0f", version, sha256[:12], len(loops),
                     len(loaded.config.devices), len({rule for rule, _ in bindings}),
                     len(bindings), collect_ms)

    async def _reconfigure_uplink(self, old: LoadedConfig, new: LoadedConfig) -> None:
        same = (old.config.uplink == new.config.uplink
                and old.config.gateway == new.config.gateway
                and catalog_points(old) == catalog_points(new))
        if same:
            return
        if self._uplink_task is not None:
            self._uplink_task.cancel()
            await asyncio.gather(self._uplink_task, return_exceptions=True)
            self._uplink_task = None
        if self.uplink is not None:
            await self.uplink.close()
        self.uplink = self._make_uplink(new)
        self.handoff.resend_unsent()
        if self.uplink is not None and self._group is not None:
            self._uplink_task = self._group.create_task(self.uplink.run(), name="uplink")

    async def _reconfigure_panel(self, old: LoadedConfig, new: LoadedConfig) -> None:
        if old.config.panel == new.config.panel:
            return
        if self._panel_task is not None:
            self._panel_task.cancel()
            await asyncio.gather(self._panel_task, return_exceptions=True)
            self._panel_task = None
        if self.panel is not None:
            await self.panel.stop()
        self.panel_ready.clear()
        self.panel_port = None
        self.panel = self._make_panel(new)
        if self.panel is not None and self._group is not None:
            self._panel_task = self._group.create_task(self._serve_panel(), name="panel")
