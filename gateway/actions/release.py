"""Coils a config apply leaves behind: switched off, read back, reported.

An apply (or a rollback) that moves an output to another coil or drops it leaves the coil the
old config drove with no owner: the new output driver knows nothing of it, so nothing would
ever write it, watch it or report it (the output chain audit: a siren's old relay and a
removed fan's relay stayed energised for good). `CoilReleases.release` finds every coil the
replaced driver may have left on — commanded on, a write in flight, confirmed on, or a failed
write — that no output of the new config drives, and writes it its off state (`not on_value`:
a normally-closed output's relay is energised) through the new config's bus loop of the same
line, before that loop's first poll. The write is read back (unless the old output had
`verify: false`), logged (`output_released_by_config`) and journalled as an event of the old
output (rule `$output`, `released by config vN: …`). A module that does not answer is written
again on the old output's back-off schedule until it confirms or a later config drives the
coil again; a line the new config does not reach at all is logged and journalled as such
(`output_release_unreachable`) and tried again by the next apply that reaches it.

`on_stop` does not apply: it says what a stopping gateway leaves a relay at until it starts
again and writes it; a coil no config drives would never be written again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from gateway.actions.driver import OutputState, backoff_delay
from gateway.config.loader import LoadedConfig
from gateway.config.profile import ModbusProfile, RegisterType
from gateway.config.site import ModbusRtuBus, ModbusTcpBus, Output
from gateway.field.bus_loop import BusLoop
from gateway.field.modbus_link import CommFailure, ExceptionReply, ModbusLink
from gateway.field.planner import ReadRequest

log = logging.getLogger("roomwarden.actions")

ATTEMPTS = 2
"""Writes per try (one immediate retry after a lost reply); further tries follow the old
output's back-off."""


@dataclass(frozen=True, slots=True)
class Coil:
    """A coil as the field sees it, whatever the configs call it."""

    line: tuple[object, ...]
    """The physical line: ("rtu", port) or ("tcp", host, port)."""
    unit: int
    address: int


@dataclass(frozen=True, slots=True)
class Driven:
    """An output of a config and the coil it drives."""

    output: Output
    coil: Coil
    bus: str


@dataclass(eq=False)
class Orphan:
    """A coil to switch off, and how the tries went."""

    driven: Driven
    version: int
    """The config that released it."""
    tries: int = 0
    """Failed tries in a row."""
    error: str | None = None
    retry: asyncio.TimerHandle | None = None

    @property
    def name(self) -> str:
        output = self.driven.output
        return f"{output.device}.{output.point}"


def coils_of(loaded: LoadedConfig) -> dict[str, Driven]:
    """Output id → the coil it drives, for outputs on an enabled Modbus device."""
    devices = {d.id: d for d in loaded.config.devices}
    buses = {b.id: b for b in loaded.config.buses}
    driven = {}
    for output in loaded.config.outputs:
        device = devices.get(output.device)
        if device is None or not device.enabled:
            continue
        bus, profile = buses.get(device.bus), loaded.profiles.get(device.profile)
        line = line_of(bus)
        if line is None or not isinstance(profile, ModbusProfile):
            continue
        point = next((p for p in profile.points if p.name == output.point), None)
        if point is not None:
            driven[output.id] = Driven(output, Coil(line, device.unit, point.address),
                                       device.bus)
    return driven


def line_of(bus: object) -> tuple[object, ...] | None:
    if isinstance(bus, ModbusRtuBus):
        return ("rtu", bus.port)
    if isinstance(bus, ModbusTcpBus):
        return ("tcp", bus.host, bus.port)
    return None


def may_be_on(state: OutputState, module_answered: bool) -> bool:
    """What the driver knows of a coil leaves it possibly on: commanded or confirmed on, a
    write in flight when its bus loop stopped, or a failed write (its state unknown) — unless
    nothing of that config ever reached the module (no poll answered, no write confirmed, its
    writes unanswered: a config that put the bus on a wrong port), so none of its writes
    landed."""
    if not module_answered and state.confirmed is None and (state.unanswered
                                                            or state.pending):
        return False
    if state.pending or state.failed or state.commanded is True or state.confirmed is True:
        return True
    if state.commanded is None and state.confirmed is None:
        return state.writes > 0  # written, then carried while a write was in flight
    return False


class CoilReleases:
    """The coils released by applies and not yet confirmed off (kept from one apply to the
    next, so a module offline at one apply is switched off by a later one)."""

    def __init__(self, report: Callable[[str, str], None]) -> None:
        self.report = report
        """Journal a note on an output (id, note): the gateway's `$output` system event."""
        self.pending: dict[Coil, Orphan] = {}

    def release(self, previous: dict[str, OutputState], old: LoadedConfig,
                old_loops: list[BusLoop], new: LoadedConfig, loops: list[BusLoop],
                version: int) -> list[Orphan]:
        """Switch off what the replaced driver (`previous`: its states; `old_loops`: its
        config's bus loops, stopped) may have left on and `new` does not drive, through `loops`
        (the new config's, before they start). Returns the coils released (those pending from
        earlier applies too)."""
        self.close()
        old_coils = coils_of(old)
        driven = {d.coil for d in coils_of(new).values()}
        answered = {device for loop in old_loops
                    for device, health in loop.stats.device_health.items()
                    if health.last_success_mono is not None}
        for output_id, state in previous.items():
            target = old_coils.get(output_id)
            if target is None or target.coil in driven or target.coil in self.pending:
                continue
            if may_be_on(state, target.output.device in answered):
                self.pending[target.coil] = Orphan(target, version)
        for coil in [c for c in self.pending if c in driven]:
            del self.pending[coil]  # the new config drives it: its driver writes it
        by_line = {line_of(b): b.id for b in new.config.buses}
        reach = {loop.bus_id: loop for loop in loops if isinstance(loop.link, ModbusLink)}
        for orphan in self.pending.values():
            loop = reach.get(by_line.get(orphan.driven.coil.line, ""))
            if loop is None:
                self._unreachable(orphan, version)
            else:
                loop.submit(functools.partial(self._write, orphan, loop))
        return list(self.pending.values())

    def close(self) -> None:
        """Stop the retries (an apply replaces the loops, or the gateway stops)."""
        for orphan in self.pending.values():
            if orphan.retry is not None:
                orphan.retry.cancel()
                orphan.retry = None

    def _unreachable(self, orphan: Orphan, version: int) -> None:
        output, bus = orphan.driven.output, orphan.driven.bus
        log.error("event=output_release_unreachable output=%s device=%s point=%s bus=%s "
                  "version=%d (no bus of this config reaches its line: it stays as it was)",
                  output.id, output.device, output.point, bus, version)
        self.report(output.id, f"released by config v{version}: {orphan.name} not switched "
                               f"off: no bus of this config reaches bus {bus}'s line; it may "
                               "still be on — switch it off at the module")

    async def _write(self, orphan: Orphan, loop: BusLoop) -> None:
        if self.pending.get(orphan.driven.coil) is not orphan:
            return  # confirmed meanwhile, or a later apply drives it
        orphan.retry = None
        output, coil = orphan.driven.output, orphan.driven.coil
        link = loop.link
        assert isinstance(link, ModbusLink)
        value = not output.on_value
        error: str | None = None
        for _ in range(ATTEMPTS):
            try:
                await link.write_coil(coil.address, value, coil.unit)
                if output.verify:
                    [read] = await link.read(ReadRequest(RegisterType.COIL, coil.address, 1,
                                                         ()), coil.unit)
                    if bool(read) != value:
                        error = f"read back {bool(read)} after writing {value}"
                        break
                error = None
                break
            except (CommFailure, ExceptionReply) as exc:
                error = str(exc)
        if self.pending.get(coil) is not orphan:
            return
        if error is None:
            del self.pending[coil]
            after = f" after {orphan.tries} failed tries" if orphan.tries else ""
            log.info("event=output_released_by_config output=%s device=%s point=%s coil=%s "
                     "read_back=%s version=%d tries=%d", output.id, output.device,
                     output.point, value, output.verify, orphan.version, orphan.tries + 1)
            checked = "read back off" if output.verify else "not read back: verify is off"
            self.report(output.id, f"released by config v{orphan.version}: {orphan.name} "
                                   f"switched off ({checked}){after}")
            return
        orphan.tries += 1
        delay = backoff_delay(output, orphan.tries)
        log.error("event=output_release_failed output=%s device=%s point=%s error=%s "
                  "retry_in=%gs tries=%d", output.id, output.device, output.point, error, delay,
                  orphan.tries)
        if orphan.tries == 1:
            self.report(output.id, f"released by config v{orphan.version}: {orphan.name} "
                                   f"could not be switched off ({error}); it may still be "
                                   f"on, tried again every {delay:g} s or more")
        orphan.error = error
        orphan.retry = asyncio.get_running_loop().call_later(
            delay, loop.submit, functools.partial(self._write, orphan, loop))
