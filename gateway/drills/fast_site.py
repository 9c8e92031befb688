"""A simulated site polled on a manual clock: the drills' fast mode.

Devices are the simulator's own (`DeviceImage` for Modbus, `TextDevice` for serial text), driven
by a `SignalTable` on the drill's clock, and read through the gateway's real decoding path: the
planned Modbus reads are cut from the device image's registers and decoded by the poller's
compiled `gateway.field.block.BlockDecoder` (bits by `gateway.field.readings`); a serial
device's reply line is parsed by `SerialTextPoller`. Only the bytes on the wire are skipped —
the drills' real-time mode and the benches cover those.
Device faults (no reply, garbage, …) become comm errors and device health as on a real bus.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator

from gateway.clock import ManualClock
from gateway.config.loader import LoadedConfig
from gateway.config.profile import ModbusProfile, RegisterType, SerialTextProfile
from gateway.config.section import defaults
from gateway.config.site import Device, FailurePolicy
from gateway.field.block import BlockDecoder
from gateway.field.bus_loop import ONLINE_POINT
from gateway.field.health import DeviceHealth
from gateway.field.planner import ReadRequest, plan_requests
from gateway.field.points import bind_points
from gateway.field.readings import bit_samples, failed_samples
from gateway.field.sample import Quality, Sample
from gateway.field.serial_text import SerialTextLink, SerialTextPoller
from gateway.records import dataclass
from gateway.sim.faults import FaultMode, FaultTable
from gateway.sim.feedback import wire_feedback
from gateway.sim.modbus_sim import DeviceImage, LogEntry
from gateway.sim.serial_sim import TextDevice
from gateway.sim.signals import Constant, SignalTable

FAILING = {FaultMode.NO_REPLY, FaultMode.GARBAGE, FaultMode.CRC_ERROR, FaultMode.TRUNCATED,
           FaultMode.EXCEPTION}


@dataclass
class _Polled:
    device: Device
    interval: float
    health: DeviceHealth
    image: DeviceImage | None = None
    requests: tuple[ReadRequest, ...] = ()
    decoders: tuple[BlockDecoder, ...] = ()
    """One per register request (bit requests' unused), compiled once as the poller does."""
    text: TextDevice | None = None
    parser: SerialTextPoller | None = None


class FastSite:
    def __init__(self, loaded: LoadedConfig, clock: ManualClock, seed: int = 0) -> None:
        self.loaded = loaded
        self.clock = clock
        self.signals = SignalTable(clock)
        self.faults = FaultTable(seed=seed)
        buses = {b.id: b for b in loaded.config.buses}
        self._devices: list[_Polled] = []
        for device in loaded.config.devices:
            if not device.enabled:
                continue
            bus = buses[device.bus]
            profile = loaded.profile_of(device)
            interval = device.poll_interval or profile.default_poll_interval
            health = DeviceHealth(device.id, interval, bus.failure or defaults(FailurePolicy))
            self.faults.add_device(device.id)
            if isinstance(profile, ModbusProfile):
                points = bind_points(device, profile)
                requests = tuple(plan_requests(points, max_gap=0))
                self._devices.append(_Polled(
                    device, interval, health, image=DeviceImage(device, profile, self.signals,
                                                                seed),
                    requests=requests, decoders=tuple(BlockDecoder(r) for r in requests)))
            else:
                assert isinstance(profile, SerialTextProfile)
                link = SerialTextLink(bus)  # type: ignore[arg-type]  # never opened
                self._devices.append(_Polled(
                    device, interval, health, text=TextDevice(device, profile, self.signals,
                                                              seed),
                    parser=SerialTextPoller(device, profile, link, clock)))
        wire_feedback(self.signals, loaded)
        self._images = {p.device.id: p.image for p in self._devices if p.image is not None}
        self._driven: dict[str, bool] = {}
        start = clock.monotonic()
        self._queue = [(start, index) for index in range(len(self._devices))]
        heapq.heapify(self._queue)

    def drive(self, wanted: dict[str, bool]) -> None:
        """A perfect output driver: write each output's coil when its wanted state changes
        (what the daemon's driver does over the wire, less the bytes)."""
        for output in self.loaded.config.outputs:
            on = wanted.get(output.id)
            image = self._images.get(output.device)
            if on is None or image is None or self._driven.get(output.id) is on:
                continue
            if self.faults.active(output.device).mode in FAILING:
                continue  # a module that does not answer takes no write (retried next time)
            point = image.by_id[f"{output.device}.{output.point}"]
            coil = output.on_value if on else not output.on_value
            image.apply_write(RegisterType.COIL, point.modbus.address, [coil])
            self._driven[output.id] = on

    def point_ids(self) -> set[str]:
        """Every simulated point (`device.point`; a register's flags `device.point.flag`)."""
        ids = {pid for image in self._images.values() for pid in (*image.by_id,
                                                                   *image.flag_owner)}
        for polled in self._devices:
            if polled.text is not None:
                ids.update(polled.text.by_id)
                ids.update(flag.id for point in polled.text.points for flag in point.flags)
        return ids

    def coil_ids(self) -> set[str]:
        """The simulated coils (what `stick` and a drill's `writes` name)."""
        return {pid for image in self._images.values() for pid, point in image.by_id.items()
                if point.modbus.register is RegisterType.COIL}

    def stick(self, point_id: str, state: bool | None) -> None:
        """A relay that no longer follows its writes (see SimulatedSite.stick)."""
        image = self._images.get(point_id.split(".", 1)[0])
        point = None if image is None else image.by_id.get(point_id)
        if image is None or point is None or point.modbus.register is not RegisterType.COIL:
            raise KeyError(f"no simulated coil {point_id!r}")
        if state is None:
            image.stuck.pop(point.modbus.address, None)
        else:
            image.stuck[point.modbus.address] = state
            self.signals.set(point_id, Constant(value=state))

    def log(self) -> list[LogEntry]:
        """Every simulated Modbus device's coil and input log, in time order."""
        return sorted((e for image in self._images.values() for e in image.log),
                      key=lambda e: e.t)

    def next_due(self) -> float:
        """Monotonic time of the next poll (inf when there is none)."""
        return self._queue[0][0] if self._queue else math.inf

    def health(self) -> dict[str, DeviceHealth]:
        return {p.device.id: p.health for p in self._devices}

    def polls_until(self, until: float) -> Iterator[list[Sample]]:
        """Advance the clock poll by poll up to monotonic `until`, yielding each batch."""
        while self._queue and self._queue[0][0] <= until:
            due, index = heapq.heappop(self._queue)
            if due > self.clock.monotonic():
                self.clock.advance(due - self.clock.monotonic())
            polled = self._devices[index]
            batch = self._poll(polled)
            delay = polled.health.next_delay()
            heapq.heappush(self._queue, (due + delay, index))
            yield batch
        if until > self.clock.monotonic():
            self.clock.advance(until - self.clock.monotonic())

    def _poll(self, polled: _Polled) -> list[Sample]:
        ts = self.clock.now_ns()
        samples: list[Sample] = []
        fault = self.faults.active(polled.device.id)
        failing = fault.mode in FAILING or (
            fault.mode is FaultMode.SLOW_REPLY
            and fault.delay >= self._timeout(polled.device))
        if failing:
            if polled.image is not None:
                for request in polled.requests:
                    failed_samples(request.points, ts, Quality.COMM_ERROR, samples)
            elif polled.parser is not None:
                failed_samples(polled.parser.points, ts, Quality.COMM_ERROR, samples)
            polled.health.record_failure(f"simulated {fault.mode.value}")
        elif polled.image is not None:
            image = polled.image
            for request, decoder in zip(polled.requests, polled.decoders, strict=True):
                image.refresh(request.register)
                if request.register.is_bit:
                    bits = image.bits[request.register]
                    bit_samples(request, [bits.get(a, False) for a in
                                          range(request.address, request.end)], ts, samples)
                else:
                    words = image.words[request.register]
                    decoder([words.get(a, 0) for a in range(request.address, request.end)],
                            ts, samples)
            polled.health.record_success(self.clock.monotonic())
        else:
            assert polled.text is not None and polled.parser is not None
            reply = polled.text.reply().rstrip(polled.text.terminator)
            result = polled.parser.parse_reply(reply, ts)
            samples = result.samples
            if result.answered:
                polled.health.record_success(self.clock.monotonic())
            else:
                polled.health.record_failure(result.error or "no answer")
        samples.append(Sample(f"{polled.device.id}.{ONLINE_POINT}",
                              polled.health.online is not False, ts, Quality.GOOD))
        return samples

    def _timeout(self, device: Device) -> float:
        return next(b.timeout for b in self.loaded.config.buses if b.id == device.bus)
