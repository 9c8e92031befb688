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

Not forgotten by a restart: what is pending is kept in the alarm journal's meta (`coil_releases`,
committed with synchronous=FULL as the outputs held until reset are; its format and bounds:
`gateway.actions.orphans`) whenever it changes — a release made, confirmed, dropped, or its
first try failed. A start restores them (`restore`) and writes them off before the bus loops'
first poll, on the same back-off from then on; one whose coil the running config drives is
dropped (its driver writes the coil); what cannot be read is logged
(`output_release_refused`), not restored and forgotten — never a failed start.

Not silent while it fails: a release not confirmed after its first try (or whose line no bus
reaches — its `error` set) raises its old output's `actions.output_failure` alarm (the gateway
hands `pending` to the safety core each round with the driver's failed writes:
gateway.actions.failures) — on the panel, in `roomwarden status`, in the journal and uplink as
any failing output's — until it is confirmed off or a config drives the coil again; a restart
keeps it up while the release is still pending.

`on_stop` does not apply: it says what a stopping gateway leaves a relay at until it starts
again and writes it; a coil no config drives would never be written again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable

from gateway.actions.driver import OutputState, backoff_delay
from gateway.actions.orphans import MAX_PENDING, Coil, Driven, Orphan, decode, encode
from gateway.config.loaded import LoadedConfig
from gateway.config.profile import ModbusProfile, RegisterType
from gateway.config.site import ModbusRtuBus, ModbusTcpBus
from gateway.field.bus_loop import BusLoop
from gateway.field.modbus_link import CommFailure, ExceptionReply, ModbusLink
from gateway.field.planner import ReadRequest

log = logging.getLogger("roomwarden.actions")

ATTEMPTS = 2
"""Writes per try (one immediate retry after a lost reply); further tries follow the old
output's back-off."""


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
                                       device.bus, output.rooms or (device.room,))
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
    next, so a module offline at one apply is switched off by a later one, and in the alarm
    journal, so a restart goes on with them: `restore`)."""

    def __init__(self, report: Callable[[str, str], None],
                 keep: Callable[[str], None] | None = None) -> None:
        self.report = report
        """Journal a note on an output (id, note): the gateway's `$output` system event."""
        self.keep = keep
        """Store the pending releases (`orphans.encode`) where a restart finds them: the
        alarm journal's meta `coil_releases` (`AlarmLedger.keep`). None: memory only."""
        self.pending: dict[Coil, Orphan] = {}
        self._kept: str | None = None
        """The value last stored (nothing is written when it does not change)."""

    def restore(self, text: str | None, loaded: LoadedConfig, loops: list[BusLoop],
                version: int) -> list[Orphan]:
        """At a start: the releases the journal kept (`text`, `orphans.decode`) are pending
        again and written off through `loops` (before their first poll), or reported
        unreachable; those whose coil `loaded` drives are dropped (its driver writes them).
        What the value holds that cannot be read is logged, not restored, and forgotten (the
        value is stored again without it). Returns the releases pending."""
        self._kept = text
        orphans, problems = decode(text)
        for problem in problems:
            log.error("event=output_release_refused problem=%r (not restored: that coil, if "
                      "any, is not switched off by the gateway — check it at the module)",
                      problem)
        for orphan in orphans:
            log.warning("event=output_release_restored output=%s device=%s point=%s "
                        "version=%d tries=%d error=%r", orphan.driven.output.id,
                        orphan.driven.output.device, orphan.driven.output.point,
                        orphan.version, orphan.tries, orphan.error)
            self.pending[orphan.driven.coil] = orphan
        self._dispatch(loaded, loops, version)
        self._save()
        return list(self.pending.values())

    def release(self, previous: dict[str, OutputState], old: LoadedConfig,
                old_loops: list[BusLoop], new: LoadedConfig, loops: list[BusLoop],
                version: int) -> list[Orphan]:
        """Switch off what the replaced driver (`previous`: its states; `old_loops`: its
        config's bus loops, stopped) may have left on and `new` does not drive, through `loops`
        (the new config's, before they start). Returns the coils released (those pending from
        earlier applies, or restored at the start, too)."""
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
        self._dispatch(new, loops, version)
        self._save()
        return list(self.pending.values())

    def _dispatch(self, new: LoadedConfig, loops: list[BusLoop], version: int) -> None:
        """Drop the releases whose coil `new` drives; queue the others' writes on the loop of
        their line, or report them unreachable."""
        owners = {d.coil: output_id for output_id, d in coils_of(new).items()}
        for coil in [c for c in self.pending if c in owners]:
            output = self.pending.pop(coil).driven.output  # its driver writes it
            log.info("event=output_release_dropped output=%s device=%s point=%s owner=%s "
                     "version=%d (the running config drives the coil)", output.id,
                     output.device, output.point, owners[coil], version)
        by_line = {line_of(b): b.id for b in new.config.buses}
        reach = {loop.bus_id: loop for loop in loops if isinstance(loop.link, ModbusLink)}
        for orphan in self.pending.values():
            loop = reach.get(by_line.get(orphan.driven.coil.line, ""))
            if loop is None:
                self._unreachable(orphan, version)
            else:
                loop.submit(functools.partial(self._write, orphan, loop))

    def close(self) -> None:
        """Stop the retries (an apply replaces the loops, or the gateway stops): what is
        pending stays stored for the next start."""
        for orphan in self.pending.values():
            if orphan.retry is not None:
                orphan.retry.cancel()
                orphan.retry = None

    def _save(self) -> None:
        """Store what is pending, if it changed since the last time."""
        orphans = list(self.pending.values())
        text = encode(orphans)
        if self.keep is None or text == self._kept or not (orphans or self._kept):
            return
        if len(orphans) > MAX_PENDING:
            log.error("event=output_releases_not_kept pending=%d kept=%d (a restart forgets "
                      "the newest)", len(orphans), MAX_PENDING)
        self.keep(text)
        self._kept = text

    def _unreachable(self, orphan: Orphan, version: int) -> None:
        output, bus = orphan.driven.output, orphan.driven.bus
        log.error("event=output_release_unreachable output=%s device=%s point=%s bus=%s "
                  "version=%d (no bus of this config reaches its line: it stays as it was)",
                  output.id, output.device, output.point, bus, version)
        orphan.error = f"no bus of config v{version} reaches bus {bus}'s line"
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
            self._save()
            return
        orphan.tries += 1
        delay = backoff_delay(output, orphan.tries)
        log.error("event=output_release_failed output=%s device=%s point=%s error=%s "
                  "retry_in=%gs tries=%d", output.id, output.device, output.point, error, delay,
                  orphan.tries)
        first = orphan.error is None  # from now on its output's alarm is up
        orphan.error = error
        if orphan.tries == 1:
            self.report(output.id, f"released by config v{orphan.version}: {orphan.name} "
                                   f"could not be switched off ({error}); it may still be "
                                   f"on, tried again every {delay:g} s or more")
        if first or orphan.tries == 1:
            self._save()
        orphan.retry = asyncio.get_running_loop().call_later(
            delay, loop.submit, functools.partial(self._write, orphan, loop))
