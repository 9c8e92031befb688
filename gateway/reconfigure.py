"""Running another config without a break in any alarm: the work of `Gateway.reconfigure`
(gateway.reconfigurable, driven by gateway.flashing.apply) — new bus loops, rules and outputs;
the alarms carried through the journal, the rules' evaluation state through
`SafetyCore.take_over`, the output driver's knowledge of each coil (`carry_output_states`);
a coil the new config no longer drives switched off (`gateway.actions.release`); the uplink
and the panel restarted only when their settings changed. Imported at the first apply's trial
(a gateway at rest does not hold it, issue 15).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import time
from typing import TYPE_CHECKING

from gateway.actions.driver import OutputDriver
from gateway.config.loaded import LoadedConfig
from gateway.field.buses import build_bus_loops
from gateway.field.catalog import catalog_points
from gateway.heap import trim
from gateway.safety import SafetyCore, acquisition
from gateway.service.watchdog import configure_stall_limits

if TYPE_CHECKING:
    from gateway.daemon import Gateway

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


async def reconfigure(gw: Gateway, loaded: LoadedConfig, *, version: int,
                      sha256: str) -> None:
    """`Gateway.reconfigure` (gateway.reconfigurable says what it does)."""
    async with gw._reconfigure_lock:
        core = SafetyCore(loaded, gw.clock, gw.journal_path, rules_dir=gw.rules_dir,
                          open_alarms=False, config_version=version)
        loops = build_bus_loops(loaded, gw._on_samples, gw.clock)
        configure_stall_limits(loaded, loops)
        old_tasks = gw._loop_tasks
        for task in old_tasks:
            task.cancel()
        await asyncio.gather(*old_tasks, return_exceptions=True)  # ports closed
        if not await gw.core.journal.settled(JOURNAL_SETTLE):  # the new core reads it
            log.warning("event=alarm_journal_unwritten_at_apply events=%d error=%r",
                        gw.core.journal.pending_events, gw.core.journal.last_error)
        # from here to the swap nothing awaits: the old core has stopped writing the
        # journal, and the new one takes over exactly where it stands
        old_core, old_loaded, old_driver = gw.core, gw.loaded, gw.driver
        old_loops = gw.bus_loops
        earlier = gw._replaced_core
        if earlier is not None and earlier.loaded.config != loaded.config:
            earlier = None  # only a rollback (or revert) looks further back
        carried, held = core.take_over(old_core, earlier)
        gw.loaded, gw.core, gw.bus_loops = loaded, core, loops
        gw.driver = OutputDriver(loaded, loops, gw.latest, gw.clock)
        carry_output_states(gw.driver, old_driver, loaded, old_loaded)
        # queued before the new loops' first poll: what the alarms in progress want (a
        # moved siren's new relay on), then the coils no output drives any more off —
        # make before break on a shared line
        gw.driver.apply(core.plan_outputs())
        gw.releases.release(old_driver.state, old_loaded, old_loops, loaded, loops, version)
        gw.config_version, gw.config_sha256 = version, sha256
        old_core.close()
        # a rollback leaves nothing to look back to: the failed candidate's core (rules'
        # state for every binding it had) is let go, not kept until the next apply
        gw._replaced_core = None if earlier is not None else old_core
        log.info("event=rule_state_carried bindings=%d carried=%d held=%d rollback=%s",
                 len(core.engine.bindings()), carried, held, earlier is not None)
        if gw._group is not None:
            gw._start_loops()
        await _reconfigure_uplink(gw, old_loaded, loaded)
        if gw.uplink is not None:
            gw.uplink.set_config_identity(version, sha256)
        await _reconfigure_panel(gw, old_loaded, loaded)
        gw.reconfigurations += 1
        gw.evaluator.owe()  # the new rules' first round evaluates everything
        bindings = core.engine.bindings()
        del old_tasks, old_driver, old_loops  # the replaced loops' last holders here
        collect_ms = _collect_replaced()
        log.info("event=gateway_reconfigured version=%d sha256=%s buses=%d devices=%d "
                 "rules=%d bindings=%d gc_ms=%.0f", version, sha256[:12], len(loops),
                 len(loaded.config.devices), len({rule for rule, _ in bindings}),
                 len(bindings), collect_ms)


async def _reconfigure_uplink(gw: Gateway, old: LoadedConfig, new: LoadedConfig) -> None:
    same = (old.config.uplink == new.config.uplink
            and old.config.gateway == new.config.gateway
            and catalog_points(old) == catalog_points(new))
    if same:
        return
    await _ended(gw._uplink_task)
    gw._uplink_task = None
    if gw.uplink is not None:
        await gw.uplink.close()
    gw.uplink = gw._make_uplink(new)
    gw.handoff.resend_unsent()
    if gw.uplink is not None and gw._group is not None:
        gw._uplink_task = gw._group.create_task(gw.uplink.run(), name="uplink")


async def _reconfigure_panel(gw: Gateway, old: LoadedConfig, new: LoadedConfig) -> None:
    if old.config.panel == new.config.panel:
        return
    await _ended(gw._panel_task)
    gw._panel_task = None
    if gw.panel is not None:
        await gw.panel.stop()
    gw.panel_ready.clear()
    gw.panel_port = None
    gw.panel = gw._make_panel(new)
    if gw.panel is not None and gw._group is not None:
        gw._panel_task = gw._group.create_task(gw._serve_panel(), name="panel")


async def _ended(task: asyncio.Task[None] | None) -> None:
    """`task` (if any) cancelled, and over."""
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
