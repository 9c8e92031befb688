"""A clean stop's outputs (SIGTERM, `systemctl stop`): every output is written its configured
stop state through the still-running bus loops, and the stop waits, bounded, for the writes to
be confirmed. `on_stop: hold` (the default of fans and charge inhibits: a fan purging hydrogen
keeps running) leaves an output as it is — but a live drill running at the stop ends first
(journalled and sent on, `drill_ended`), so a held output is left as the real alarms want it,
not on because an evacuation drill drove it (the drills audit: a charge inhibit held on, the
battery kept from charging, for as long as the gateway stayed stopped)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gateway.actions.driver import OutputDriver
from gateway.alarms.events import AlarmEvent
from gateway.clock import Clock
from gateway.config.loaded import LoadedConfig
from gateway.safety import SafetyCore

log = logging.getLogger("roomwarden.daemon")

STOP_OUTPUT_TIMEOUT = 5.0
"""How long a clean stop waits for the outputs' stop-state writes to be confirmed."""


def end_drill(core: SafetyCore, hand_on: Callable[[list[AlarmEvent]], None],
              why: str) -> dict[str, bool]:
    """End a live drill of `core` outside a round and re-plan the outputs without it; return
    the plan ({} when no drill was running)."""
    drill = core.drill
    if drill is None or drill.finished:
        return {}
    events = drill.end(core.alarms, why)
    core.drill = None
    planned = dict(core.plan_outputs())
    hand_on([*events, *core.take_output_events()])
    return planned


async def leave_outputs_safe(loaded: LoadedConfig, core: SafetyCore, driver: OutputDriver,
                             clock: Clock, hand_on: Callable[[list[AlarmEvent]], None],
                             timeout: float = STOP_OUTPUT_TIMEOUT) -> None:
    """Write every output its stop state (the evaluator already stopped) and wait, bounded,
    for the writes to be confirmed; each logged (`output_stop_state`)."""
    planned = end_drill(core, hand_on, "the gateway stopped")
    wanted: dict[str, bool] = {}
    for output in loaded.config.outputs:
        if output.stop_state != "hold":
            wanted[output.id] = output.stop_state == "on"
        elif output.id in planned:  # held as the real alarms want it, not as a drill did
            wanted[output.id] = planned[output.id]
    _interlocked(loaded, wanted, driver)
    if not wanted:
        return
    deadline = clock.monotonic() + timeout
    while True:
        driver.apply(wanted)  # skips outputs with a write in flight: apply again
        settled = all(not driver.state[o].pending and driver.state[o].commanded == on
                      for o, on in wanted.items()
                      if o in driver.state and driver.reachable(o))  # (never written)
        if settled or clock.monotonic() >= deadline:
            break
        await asyncio.sleep(0.02)
    for output_id, on in wanted.items():
        written = driver.state.get(output_id)
        if written is not None:
            log.info("event=output_stop_state output=%s on=%s confirmed=%s error=%s",
                     output_id, on, written.confirmed == on and not written.failed,
                     written.last_error)


def _interlocked(loaded: LoadedConfig, wanted: dict[str, bool], driver: OutputDriver) -> None:
    """`wanted` with the interlocks kept through the stop: an output its stop state would turn
    (or leave) on while one of its `while_on` outputs is on at the stop — written on, or held
    as it is — is written off instead (the outputs audit: recirculation with `on_stop: on`
    and the hydrogen purge fan held running, both on for as long as the gateway stayed
    stopped). Locks chain (one off may free another's blocker): decided until nothing changes
    (each pass turns one more output off at most once; cycles are refused by the check)."""
    def on(output_id: str) -> bool:
        if output_id in wanted:
            return wanted[output_id]
        state = driver.state.get(output_id)  # held as it is
        return state is not None and (state.commanded is True or state.confirmed is True)

    changed = True
    while changed:
        changed = False
        for lock in loaded.config.interlocks:
            if on(lock.output) and on(lock.while_on):
                wanted[lock.output] = False
                changed = True
                log.warning("event=output_stop_state_interlocked output=%s while_on=%s "
                            "reason=%r", lock.output, lock.while_on, lock.reason or "")

