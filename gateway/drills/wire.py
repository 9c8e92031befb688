"""Run a drill over the wire, in real time: the simulator serves the drill's site on loopback
and ptys (paced RS-485 lines, Modbus TCP servers, the serial UPS), a real `Gateway` polls it,
evaluates its rules and drives the simulated relay coils through its output driver.

What counts as observed:
* an alarm: the first time the gateway's alarm manager shows it active (with its severity),
  looked at every `WATCH_INTERVAL` when an alarm event was journalled since the last look
  (every activation is one);
* an output switching: the simulator's coil log — the write that put the coil into the
  output's on (or off) state, at the simulator, not what the gateway meant to do.

The report carries the simulator's coil and input log (writes, and changes of coils and
discrete inputs such as a fan's airflow switch) as evidence. Times are seconds after the
gateway was started. A drill meant for this mode is short (it runs in real time).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from gateway.alarms.lifecycle import AlarmState
from gateway.config.loader import load_gateway_config
from gateway.daemon import Gateway
from gateway.drills.runner import (
    DrillReport,
    _apply,
    evidence,
    judge,
    load_drill,
    site_of,
    write_log,
)
from gateway.sim.site import SimulatedSite

WATCH_INTERVAL = 0.05
ACTIVE = {AlarmState.ACTIVE_UNACKNOWLEDGED, AlarmState.ACTIVE_ACKNOWLEDGED}


async def run_wire_drill(path: Path, work_dir: Path) -> DrillReport:
    """Play the drill at `path` against a real gateway over the wire; `work_dir` holds the
    rewritten config and the gateway's state."""
    drill = load_drill(path)
    loaded = load_gateway_config(site_of(path, drill))
    report = DrillReport(drill, path)
    await asyncio.to_thread(work_dir.mkdir, parents=True, exist_ok=True)
    async with SimulatedSite(loaded, seed=drill.seed) as site:
        config = load_gateway_config(site.write_config(work_dir / f"{drill.drill}.yaml"))
        gateway = Gateway(config, state_dir=work_dir / "state")
        clock = site.signals.clock
        start = clock.monotonic()
        task = asyncio.create_task(gateway.run())
        first_active: dict[tuple[str, str], float] = {}
        severities: dict[tuple[str, str], str] = {}
        steps = sorted(drill.steps, key=lambda s: s.at)
        seen_seq = -1
        try:
            while (now := clock.monotonic() - start) < drill.duration:
                if task.done():
                    task.result()  # the gateway died: say why
                    raise RuntimeError("the gateway stopped during the drill")
                while steps and steps[0].at <= now:
                    _apply(steps.pop(0), site, gateway.core)
                alarms = gateway.core.alarms
                if alarms.last_seq != seen_seq:  # else no alarm event: nothing became active
                    seen_seq = alarms.last_seq
                    for view in alarms.active():
                        key = (view.key.rule, view.key.subject)
                        if view.state in ACTIVE and key not in first_active:
                            first_active[key] = now
                            severities[key] = str(view.severity)
                            report.activations.append((now, f"{key[0]} @ {key[1]}"))
                await asyncio.sleep(WATCH_INTERVAL)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        log = site.log()
    changes: dict[str, list[tuple[float, bool]]] = {o.id: [] for o in config.config.outputs}
    coils = {f"{o.device}.{o.point}": o for o in config.config.outputs}
    for entry in log:
        output = coils.get(entry.point)
        if output is None or entry.kind != "write":
            continue
        on = entry.value == output.on_value
        history = changes[output.id]
        if not history or history[-1][1] != on:
            history.append((entry.t - start, on))
    report.evidence = evidence(log, config, origin=start)
    judge(drill, first_active, severities, changes, report, write_log(log, start))
    return report
