"""Simulated serial-text devices (Megatec Q1 UPSs, simple ASCII sensors) on an emulated line.

`TextDevice` answers its profile's `request` with `reply_format.format(**values)`: values come
from the `SignalTable` at the moment of the request (numbers as floats, `int` fields as ints,
`bool` fields as 0/1, `bitstring` fields as the integer word with any explicitly set flags
applied, so `{status:08b}` prints Q1's status bits). Per-device faults apply to each reply
(see `gateway.sim.faults`). Bytes that are not the request are ignored, as a UPS ignores
noise on its line. `SerialTextBusSim` runs one device on a `SerialLine` paced at the bus speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

from gateway.config.profile import SerialTextProfile, TextField
from gateway.config.section import replaced
from gateway.config.site import Device, SerialTextBus
from gateway.field.points import BoundPoint, bind_points
from gateway.sim.faults import FaultTable, apply_fault
from gateway.sim.signals import SignalTable, Value, apply_set_flags, define_points
from gateway.sim.wire import LineSettings, SerialLine

log = logging.getLogger(__name__)

MAX_BUFFER = 1024


def bind_all_fields(device: Device, profile: SerialTextProfile) -> list[BoundPoint]:
    fields = {name: replaced(o, enabled=True) for name, o in device.points.items()}
    return bind_points(replaced(device, points=fields), profile)


class TextDevice:
    """The reply logic of one serial-text device (no I/O)."""

    def __init__(self, device: Device, profile: SerialTextProfile, signals: SignalTable,
                 seed: int = 0) -> None:
        if profile.reply_format is None:
            raise ValueError(f"profile {profile.id!r} has no reply_format; the simulator "
                             "cannot answer for it")
        self.device = device
        self.profile = profile
        self.signals = signals
        self.points = bind_all_fields(device, profile)
        define_points(signals, self.points, seed)
        self.by_id = {p.id: p for p in self.points}
        self.request = profile.request_bytes
        self.terminator = profile.terminator_bytes
        self._format = profile.reply_format.encode(profile.encoding).decode("unicode_escape")

    def values(self) -> dict[str, Any]:
        """Format arguments: point name → raw value for the reply."""
        out: dict[str, Any] = {}
        for point in self.points:
            spec = point.spec
            assert isinstance(spec, TextField)
            out[point.name] = self._raw(point, spec, self.signals.value(point.id))
        return out

    def _raw(self, point: BoundPoint, spec: TextField, value: Value) -> Any:
        if spec.type == "string":
            return str(value)
        if spec.type == "bool":
            return int(bool(value))
        if isinstance(value, str):
            raise TypeError(f"{point.id}: text {value!r} for a numeric field")
        raw = (float(value) - point.offset) / point.scale if point.scale else float(value)
        if spec.type == "float":
            return raw
        word = apply_set_flags(self.signals, point, round(raw))
        return max(word, 0) if spec.type == "bitstring" else word

    def reply(self) -> bytes:
        """The reply line for the current values (the format includes the terminator)."""
        text = self._format.format(**self.values())
        data = text.encode(self.profile.encoding, errors="replace")
        if self.terminator and not data.endswith(self.terminator):
            data += self.terminator
        return data

    def read_point(self, point_id: str) -> Value:
        """The value the gateway would parse now (flags: `device.point.flag`)."""
        point = self.by_id.get(point_id)
        if point is not None:
            return self.signals.value(point_id)
        for owner in self.points:
            for flag in owner.flags:
                if flag.id == point_id:
                    spec = owner.spec
                    assert isinstance(spec, TextField)
                    word = int(self._raw(owner, spec, self.signals.value(owner.id)))
                    return bool((word >> flag.bit) & 1) != flag.active_low
        raise KeyError(f"no simulated point {point_id!r}")


class SerialTextBusSim:
    """One serial-text bus: a paced line and the device answering on its server end."""

    def __init__(self, bus: SerialTextBus, device: TextDevice, faults: FaultTable, *,
                 paced: bool = True) -> None:
        self.bus = bus
        self.device = device
        self.faults = faults
        self.paced = paced
        self.line: SerialLine | None = None
        self._fd: int | None = None
        self._buffer = b""
        self._pending: set[asyncio.TimerHandle] = set()
        self.requests = 0
        faults.add_device(device.device.id)

    @property
    def endpoint(self) -> str:
        if self.line is None:
            raise RuntimeError("bus is not started")
        return self.line.client_path

    async def start(self) -> None:
        settings = LineSettings(self.bus.baudrate if self.paced else None, self.bus.bytesize,
                                self.bus.parity, self.bus.stopbits)
        self.line = SerialLine(settings)
        self.line.open()
        self._fd = os.open(self.line.server_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        asyncio.get_running_loop().add_reader(self._fd, self._on_readable)
        log.info("sim_bus_started bus=%s type=serial_text endpoint=%s device=%s", self.bus.id,
                 self.endpoint, self.device.device.id)

    async def stop(self) -> None:
        for timer in self._pending:
            timer.cancel()
        self._pending.clear()
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self.line is not None:
            self.line.close()
            self.line = None

    def _on_readable(self) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, 1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        self._buffer = (self._buffer + data)[-MAX_BUFFER:]
        request = self.device.request
        while (index := self._buffer.find(request)) >= 0:
            self._buffer = self._buffer[index + len(request):]
            self.requests += 1
            self._answer()

    def _answer(self) -> None:
        device_id = self.device.device.id
        try:
            reply = self.device.reply()
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("sim_reply_failed device=%s error=%s", device_id, exc)
            return
        fault = self.faults.active(device_id)
        out = apply_fault(fault, "serial_text", reply, self.faults.rng,
                          request=self.device.request, terminator=self.device.terminator)
        if not out.data:
            return
        if out.delay > 0:
            loop = asyncio.get_running_loop()
            timer = loop.call_later(out.delay, self._write, out.data)
            self._pending.add(timer)
            return
        self._write(out.data)

    def _write(self, data: bytes) -> None:
        now = asyncio.get_running_loop().time()
        self._pending = {t for t in self._pending if not t.cancelled() and t.when() > now}
        if self._fd is None:
            return
        try:
            os.write(self._fd, data)
        except OSError as exc:
            log.warning("sim_write_failed bus=%s error=%s", self.bus.id, exc)
