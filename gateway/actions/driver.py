"""Drive output coils: write on change, read back to verify, retry, report failures.

Writes go through the bus loop of the output's device (`BusLoop.submit`), so they share the
line with polls strictly in turn and run before the next poll. A write counts only when the
coil reads back as written; otherwise it is retried (`write_retries`) and then reported as a
failed output until a later write succeeds. If the device's own polls later show the coil in
another state than commanded (a module reset, a manual override), the command is written again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass

from gateway.clock import Clock
from gateway.config.loader import LoadedConfig
from gateway.config.profile import ModbusProfile, RegisterType
from gateway.config.site import Output
from gateway.field.bus_loop import BusLoop
from gateway.field.latest import LatestSamples
from gateway.field.modbus_link import CommFailure, ExceptionReply, ModbusLink
from gateway.field.planner import ReadRequest
from gateway.field.sample import Quality

log = logging.getLogger("roomwarden.actions")

RETRY_SPACING = 0.05
FAILED_RETRY_INTERVAL = 5.0


@dataclass
class OutputState:
    commanded: bool | None = None
    """The last state asked for (True = output on)."""
    confirmed: bool | None = None
    """The state the coil was read back in after the last successful write."""
    pending: bool = False
    failures: int = 0
    last_error: str | None = None
    last_write_ns: int = 0
    writes: int = 0
    retry_at: float = 0.0
    """A failed output is written again no sooner than this (monotonic), so a dead relay
    module cannot hog its bus."""

    @property
    def failed(self) -> bool:
        return self.last_error is not None


class OutputDriver:
    def __init__(self, loaded: LoadedConfig, bus_loops: list[BusLoop], latest: LatestSamples,
                 clock: Clock) -> None:
        self.clock = clock
        self.latest = latest
        self.failed_retry_interval = FAILED_RETRY_INTERVAL
        self.outputs = {o.id: o for o in loaded.config.outputs}
        self.state = {o: OutputState() for o in self.outputs}
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
                log.error("event=output_unreachable output=%s bus=%s", output.id, device.bus)
                continue
            self._targets[output.id] = (loop, loop.link, device.unit, point.address)

    def apply(self, wanted: dict[str, bool]) -> None:
        """Command every output to its wanted state; only changes (and repairs) are written."""
        for output_id, on in wanted.items():
            state = self.state.get(output_id)
            if state is None or state.pending or output_id not in self._targets:
                continue
            retry_due = state.failed and self.clock.monotonic() >= state.retry_at
            if state.commanded != on or retry_due or self._drifted(output_id, state):
                state.commanded = on
                state.pending = True
                loop = self._targets[output_id][0]
                loop.submit(functools.partial(self._write, output_id, on))

    def _drifted(self, output_id: str, state: OutputState) -> bool:
        """The device's own polls show the coil other than commanded since the last write."""
        output = self.outputs[output_id]
        sample = self.latest.latest.get(f"{output.device}.{output.point}")
        if sample is None or sample.quality is not Quality.GOOD or state.commanded is None:
            return False
        if sample.ts <= state.last_write_ns:
            return False
        expected = output.on_value if state.commanded else not output.on_value
        if sample.value != expected:
            log.warning("event=output_drifted output=%s expected=%s polled=%s", output_id,
                        expected, sample.value)
            return True
        return False

    async def _write(self, output_id: str, on: bool) -> None:
        output: Output = self.outputs[output_id]
        state = self.state[output_id]
        _, link, unit, address = self._targets[output_id]
        coil = output.on_value if on else not output.on_value
        error: str | None = None
        try:
            for attempt in range(output.write_retries + 1):
                if attempt:
                    await asyncio.sleep(RETRY_SPACING * attempt)
                try:
                    await link.write_coil(address, coil, unit)
                    if output.verify:
                        [read] = await link.read(
                            ReadRequest(RegisterType.COIL, address, 1, ()), unit)
                        if bool(read) != coil:
                            raise CommFailure(f"read back {bool(read)} after writing {coil}")
                    error = None
                    break
                except (CommFailure, ExceptionReply) as exc:
                    error = str(exc)
            state.writes += 1
            state.last_write_ns = self.clock.now_ns()
            if error is None:
                state.confirmed = on
                if state.last_error is not None:
                    log.info("event=output_restored output=%s on=%s", output_id, on)
                state.last_error = None
                log.info("event=output_set output=%s role=%s on=%s coil=%s", output_id,
                         output.role, on, coil)
            else:
                state.failures += 1
                state.last_error = error
                state.retry_at = self.clock.monotonic() + self.failed_retry_interval
                log.error("event=output_write_failed output=%s on=%s error=%s", output_id,
                          on, error)
        finally:
            state.pending = False
