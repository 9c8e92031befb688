"""Drive output coils: write on change, read back to verify, back off when writes fail.

Writes go through the bus loop of the output's device (`BusLoop.submit`), so they share the
line with polls strictly in turn and run before the next poll. A write counts only when the
coil reads back as written. A write that gets no valid reply is retried (`write_retries`),
each attempt a bus job of its own: a poll that is due goes between them, so a module that
dies at the alarm holds the bus one timeout at a time (the output audit: a smoke input on its
bus was alarmed 5.4 s late). One whose read-back disagrees (a relay that does not follow) is
not retried at once.

A failed output is written again on its back-off schedule (`backoff`: after `initial`, then
× `multiplier`, at most `max`), per output: a dead module or a stuck relay costs its bus one
write attempt per back-off step, however often the safety core re-applies what it wants. Only
a module that was down (its polls failing too) is written at once when it answers a poll
again; one that answers polls but not writes waits the back-off like any other. Drift
repair (the device's own polls show the coil in another state than commanded: a module reset,
a manual override) waits for the back-off too, and a coil that falls back again after each
good repair is repaired on the same schedule (the first repair at once); a poll counts as
evidence when it arrived after the write ended, on the monotonic clock (a wall-clock step
back must not hide it). A new command (the wanted state changed) is written at once. The log
says what changed — output set, write failed (with the next retry), output restored, drift —
not every attempt.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable

from gateway.clock import Clock
from gateway.config.loaded import LoadedConfig
from gateway.config.profile import ModbusProfile, RegisterType
from gateway.config.site import Output
from gateway.field.bus_loop import BusLoop
from gateway.field.health import DeviceHealth
from gateway.field.latest import LatestSamples
from gateway.field.modbus_link import CommFailure, ExceptionReply, ModbusLink
from gateway.field.planner import ReadRequest
from gateway.field.sample import Quality
from gateway.records import dataclass

log = logging.getLogger("roomwarden.actions")

RETRY_SPACING = 0.05
OUTPUT_MODULE_BACKOFF = 5.0
"""Seconds a module carrying outputs is polled at least this often while it does not answer
(other devices back off to the bus's `backoff_max`): its outputs are rewritten at the first
poll it answers (a relay module back from a power cut, the siren off until then)."""


@dataclass
class OutputState:
    commanded: bool | None = None
    """The last state asked for (True = output on)."""
    confirmed: bool | None = None
    """The state the coil was read back in after the last successful write."""
    pending: bool = False
    failures: int = 0
    """Failed write attempts since the gateway started."""
    failing_for: int = 0
    """Failed attempts in a row (the back-off step)."""
    last_error: str | None = None
    last_write_ns: int = 0
    """When the last write ended (wall clock, ns: the incident records' time)."""
    last_write_mono: float = 0.0
    """When the last write ended (monotonic): polls that arrived later show what it left."""
    commanded_ns: int = 0
    """When the state asked for last changed (wall clock, ns; the incident records' time)."""
    writes: int = 0
    """Writes done (each with its retries after a missing reply)."""
    retry_at: float = 0.0
    """A failed (or drifting) output is written again no sooner than this (monotonic)."""
    failed_mono: float = 0.0
    """When it failed last (monotonic)."""
    unanswered: bool = False
    """It failed for its module not answering (not a relay that does not follow)."""
    module_down: bool = False
    """Its module's polls were failing too when it failed, or have failed since (the module
    was down, not merely deaf to writes): the first poll the module answers after that has the
    output written at once, not after its back-off — once; set again only by polls failing
    again. A module that answers polls but not writes waits the back-off (the output audit:
    it was written after every poll, a bus timeout each)."""
    drifts: int = 0
    """Drift repairs in a row: polls showing the coil other than commanded after a write."""
    seen: bool | None = None
    """The state the writes last showed the output in (True = on): the read-back of the last
    write that got one, a mismatch's too (a welded contact reads back on after an off write),
    or with `verify` off the last write acknowledged. A write without a valid reply leaves it
    (it tells nothing); None until a write tells, and again once the module goes offline. The
    interlocks' field view (`seen_on`) falls back on it."""

    @property
    def failed(self) -> bool:
        return self.last_error is not None


def backoff_delay(output: Output, failing_for: int) -> float:
    """Seconds before attempt `failing_for` + 1 after that many failed attempts in a row."""
    backoff = output.backoff
    return float(min(backoff.initial * backoff.multiplier ** max(0, failing_for - 1),
                     backoff.max))


class OutputDriver:
    def __init__(self, loaded: LoadedConfig, bus_loops: list[BusLoop], latest: LatestSamples,
                 clock: Clock) -> None:
        self.clock = clock
        self.latest = latest
        self.outputs = {o.id: o for o in loaded.config.outputs}
        self.state = {o: OutputState() for o in self.outputs}
        self._unanswered: set[str] = set()
        """Devices whose last write attempt went unanswered (`_silent`)."""
        self._answered: dict[str, tuple[int, bool | None]] = {}
        """Device → its failed polls and online state (`DeviceHealth`) when it last answered a
        write: while both stand, nothing has said it failed since, and it counts as answering
        (a confirmed write proves a module back before its next poll says so)."""
        self.on_written: Callable[[str, bool, OutputState], None] | None = None
        """Issue 12: told after every completed write (output id, state written, the outcome
        in the output's state): the incident records' output commands with read-back."""
        loops = {loop.bus_id: loop for loop in bus_loops}
        devices = {d.id: d for d in loaded.config.devices}
        self._targets: dict[str, tuple[BusLoop, ModbusLink, int, int]] = {}
        for output in self.outputs.values():
            device = devices[output.device]
            profile = loaded.profile_of(device)
            assert isinstance(profile, ModbusProfile)
            point = next(p for p in profile.points if p.name == output.point)
            loop = loops.get(device.bus)
            if loop is None or not isinstance(loop.link, ModbusLink):
                # failed from the start (audit F5): actions.output_failure, panel and status
                # say so, not only this log line (`check` refuses a disabled output device)
                why = (f"device {device.id} is disabled" if not device.enabled
                       else f"bus {device.bus} has no Modbus poll loop")
                self.state[output.id].last_error = f"output unreachable: {why}"
                log.error("event=output_unreachable output=%s bus=%s reason=%r", output.id,
                          device.bus, why)
                continue
            self._targets[output.id] = (loop, loop.link, device.unit, point.address)
            health = loop.stats.device_health.get(output.device)
            if health is not None:  # back soon after a power cut: its outputs are rewritten
                health.backoff_cap = OUTPUT_MODULE_BACKOFF

    def reachable(self, output_id: str) -> bool:
        """A bus loop carries this output's writes (an unreachable one is failed, never
        written: `output unreachable`)."""
        return output_id in self._targets

    def seen_on(self, outputs: Iterable[str]) -> dict[str, str]:
        """Of `outputs`, those whose coil the field shows on, each with what shows it — the
        newest evidence: the device's own good poll of the coil if one arrived after the last
        write ended (`polled on`), else the writes' read-back (`read back on`, `seen`). What
        the driver commands does not matter: an interlock's blocker counts as on while the
        field shows it on (gateway.actions.field). A failed poll, or a write without a valid
        reply, tells nothing: the last read-back stands (one timeout must not let what a
        welded relay interlocks start). Unknown is not on: an output whose module is offline,
        or that no write or poll has shown yet, is left out — a relay module that is down
        must not stop what its outputs interlock."""
        seen: dict[str, str] = {}
        latest, arrived = self.latest.latest, self.latest.arrived
        for output_id in outputs:
            target = self._targets.get(output_id)
            if target is None:
                continue
            output, state = self.outputs[output_id], self.state[output_id]
            health = target[0].stats.device_health.get(output.device)
            if health is not None and health.online is False:
                continue
            point = f"{output.device}.{output.point}"
            sample = latest.get(point)
            if sample is not None and sample.quality is Quality.GOOD \
                    and arrived.get(point, float("-inf")) > state.last_write_mono:
                if sample.value == output.on_value:
                    seen[output_id] = "polled on"
            elif state.seen:
                seen[output_id] = "read back on"
        return seen

    def apply(self, wanted: dict[str, bool]) -> None:
        """Command every output to its wanted state; only changes (and repairs) are written."""
        now = self.clock.monotonic()
        for output_id, on in wanted.items():
            state = self.state.get(output_id)
            if state is None or state.pending or output_id not in self._targets:
                continue
            output = self.outputs[output_id]
            health = self._targets[output_id][0].stats.device_health.get(output.device)
            if health is not None and health.online is False and not state.failed \
                    and state.commanded is not None and not self._answers(output, health):
                self._lost(output, state, now)
            back = self._back(state, health)
            waiting = now < state.retry_at and not back
            if state.commanded != on or (state.failed and not waiting) or (
                    not waiting and self._drifted(output_id, state)):
                if back:
                    state.module_down = False  # once per time the module was down
                if state.commanded != on:
                    state.commanded_ns = self.clock.now_ns()
                state.commanded = on
                state.pending = True
                loop = self._targets[output_id][0]
                loop.submit(functools.partial(self._write, output_id, on))

    def _lost(self, output: Output, state: OutputState, now: float) -> None:
        """The output's module went offline: what its coil does is unknown (a power cut drops
        every relay), so the output counts as failed — `actions.output_failure`, the panel
        and status say so — until a write to it is confirmed. Written again as soon as a
        poll finds the module answering (its polls back off to `OUTPUT_MODULE_BACKOFF` at
        most), not after the output's own back-off."""
        state.last_error = f"module {output.device} not answering: state unknown"
        state.confirmed, state.failed_mono, state.unanswered = None, now, True
        state.seen = None
        state.module_down = True
        state.retry_at = now + backoff_delay(output, max(1, state.failing_for))
        log.error("event=output_unconfirmed output=%s device=%s (module offline)", output.id,
                  output.device)

    def _answers(self, output: Output, health: DeviceHealth) -> bool:
        """The output's module answered a write since its last failed poll (or going offline
        with its bus)."""
        return self._answered.get(output.device) == (health.failures, health.online)

    @staticmethod
    def _back(state: OutputState, health: DeviceHealth | None) -> bool:
        """A failed output's module was down (`module_down`) and its polls answer again since
        the failure: it is written at once rather than after its back-off."""
        if not (state.failed and state.unanswered) or health is None:
            return False
        if health.consecutive_failures:
            state.module_down = True  # its polls fail too: down, not deaf to writes
            return False
        return state.module_down and (health.last_success_mono or 0.0) > state.failed_mono

    def _drifted(self, output_id: str, state: OutputState) -> bool:
        """The device's own polls show the coil other than commanded since the last write:
        a poll that arrived after the write ended, on the monotonic clock — never the sample's
        wall-clock stamp, which a step back puts before the write (the output audit: a siren
        switched off at its module stayed off for the hour NTP stepped the clock back)."""
        output = self.outputs[output_id]
        point = f"{output.device}.{output.point}"
        sample = self.latest.latest.get(point)
        if sample is None or sample.quality is not Quality.GOOD or state.commanded is None:
            return False
        if self.latest.arrived.get(point, float("-inf")) <= state.last_write_mono:
            return False
        expected = output.on_value if state.commanded else not output.on_value
        if sample.value == expected:
            state.drifts = 0  # the repair held
            return False
        state.drifts += 1
        # a coil that keeps falling back after good writes (a module that reverts them) is
        # repaired on the back-off schedule too, and logged once per series
        state.retry_at = self.clock.monotonic() + backoff_delay(output, state.drifts)
        if state.drifts == 1:
            log.warning("event=output_drifted output=%s expected=%s polled=%s", output_id,
                        expected, sample.value)
        return True

    def _silent(self, output: Output) -> bool:
        """The output's module is not answering: its last poll failed, or a write to it (any of
        its outputs) went unanswered since it last answered one. Such a write gets one attempt,
        not `write_retries` more: each waits the bus timeout, and the bus's detectors wait
        behind them (the storm audit: a dead relay module held a bus 25 s in a fire)."""
        loop = self._targets[output.id][0]
        health = loop.stats.device_health.get(output.device)
        return output.device in self._unanswered or (
            health is not None and health.consecutive_failures > 0
            and not self._answers(output, health))

    async def _write(self, output_id: str, on: bool, attempt: int = 0, tries: int = 0) -> None:
        """One attempt at a write (a bus job). One that goes unanswered marks the module so at
        once (its other outputs' writes get one attempt) and, while the write has tries left,
        queues the next attempt as a job of its own (`BusLoop._run_jobs` lets due polls go
        between them); the outcome is kept when the write is done."""
        output: Output = self.outputs[output_id]
        state = self.state[output_id]
        loop, link, unit, address = self._targets[output_id]
        coil = output.on_value if on else not output.on_value
        again = False
        try:
            if attempt:
                await asyncio.sleep(RETRY_SPACING * attempt)
            else:
                tries = 1 if self._silent(output) else output.write_retries + 1
            error, unanswered, read = await self._attempt(output, link, unit, address, coil)
            health = loop.stats.device_health.get(output.device)
            if unanswered:
                self._unanswered.add(output.device)
                if attempt + 1 < tries:
                    loop.submit(functools.partial(self._write, output_id, on, attempt + 1,
                                                  tries))
                    again = True
                    return
            else:
                self._unanswered.discard(output.device)
                if health is not None:
                    self._answered[output.device] = (health.failures, health.online)
            state.unanswered = unanswered
            if read is not None:  # no valid reply: nothing learnt of the coil
                state.seen = read == output.on_value
            state.module_down = unanswered and health is not None and (
                health.consecutive_failures > 0 or health.online is False)
            state.writes += 1
            state.last_write_ns = self.clock.now_ns()
            state.last_write_mono = self.clock.monotonic()
            self._record(output, state, on, coil, error)
            if self.on_written is not None:  # issue 12
                self.on_written(output_id, on, state)
        finally:
            if not again:
                state.pending = False

    @staticmethod
    async def _attempt(output: Output, link: ModbusLink, unit: int, address: int,
                       coil: bool) -> tuple[str | None, bool, bool | None]:
        """Write the coil once and read it back: (the error or None, whether it went
        unanswered, the coil as read back — or as written and acknowledged, with `verify`
        off —, None when unknown)."""
        try:
            await link.write_coil(address, coil, unit)
            if not output.verify:
                return None, False, coil
            [value] = await link.read(ReadRequest(RegisterType.COIL, address, 1, ()), unit)
        except (CommFailure, ExceptionReply) as exc:
            return str(exc), isinstance(exc, CommFailure), None
        read = bool(value)
        if read != coil:  # the module answered: writing again will not move it
            return f"read back {read} after writing {coil}", False, read
        return None, False, read

    def _record(self, output: Output, state: OutputState, on: bool, coil: bool,
                error: str | None) -> None:
        """Keep the outcome; log only a change of it (set, failed, restored)."""
        if error is None:
            if state.last_error is not None:
                log.info("event=output_restored output=%s on=%s after_failures=%d",
                         output.id, on, state.failing_for)
            elif state.confirmed is not on:
                log.info("event=output_set output=%s role=%s on=%s coil=%s", output.id,
                         output.role, on, coil)
            state.confirmed, state.last_error = on, None
            state.failing_for = 0
            if not state.drifts:
                state.retry_at = 0.0
            return
        state.failures += 1
        state.failing_for += 1
        state.failed_mono = self.clock.monotonic()
        delay = backoff_delay(output, state.failing_for)
        state.retry_at = self.clock.monotonic() + delay
        if state.last_error is None:
            log.error("event=output_write_failed output=%s on=%s error=%s retry_in=%gs "
                      "backoff_max=%gs", output.id, on, error, delay, output.backoff.max)
        state.last_error = error
