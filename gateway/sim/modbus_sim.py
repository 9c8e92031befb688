"""Simulated Modbus devices: a profile's register map served by pymodbus, fed by signals.

`DeviceImage` (gateway.sim.modbus_image, re-exported here) is one device's register map,
rendered from the signals at read time; writes by the gateway become held signal values.

`ModbusBusSim` serves one bus: a modbus_tcp bus as one pymodbus TCP server on a free
127.0.0.1 port with one unit id per device; a modbus_rtu bus as a pymodbus RTU server on the
device end of a `SerialLine` paced at the bus's speed. Per-device faults (`FaultTable`) are
applied to every outgoing frame in pymodbus's packet hook (see `gateway.sim.faults` for what
each mode does per transport); the exception mode comes from the datastore action.

Requests to a unit no device answers to get silence on RTU and exception 0x0B (gateway target
device failed to respond) on TCP, as a Modbus TCP gateway does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from functools import partial

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimAction, SimData, SimDevice

from gateway.config.loader import LoadedConfig
from gateway.config.profile import ModbusProfile, RegisterType
from gateway.config.site import ModbusRtuBus, ModbusTcpBus
from gateway.records import dataclass
from gateway.sim.faults import FaultMode, FaultTable, Transport, apply_fault
from gateway.sim.modbus_image import REGISTER_OF_FUNCTION, DeviceImage, LogEntry
from gateway.sim.signals import SignalTable, Value
from gateway.sim.wire import LineSettings, SerialLine

log = logging.getLogger(__name__)

__all__ = ["DeviceImage", "LogEntry", "ModbusBusSim", "ModbusSim"]


# --- servers ---------------------------------------------------------------------------------

PacketHook = Callable[[ServerRequestHandler, bool, bytes], bytes]


class _HookedHandler(ServerRequestHandler):
    """A connection handler whose packet hook knows its connection (to send a reply late) and
    that drops, whole, the TCP frames its `unheard` says no device hears: pymodbus cuts its
    receive buffer by what its framer used, so a frame the hook emptied stayed in front and took
    every later request of the connection with it (one silent unit silenced a whole TCP bus)."""

    def __init__(self, server: ModbusTcpServer | ModbusSerialServer, hook: PacketHook,
                 unheard: Callable[[bytes], int] | None) -> None:
        super().__init__(server, partial(hook, self), server.trace_pdu,  # type: ignore[no-untyped-call]
                         server.trace_connect)
        self._unheard = unheard

    def callback_data(self, data: bytes, addr: tuple[str, int] | None = None) -> int:
        dropped = 0
        while self._unheard is not None and (frame := self._unheard(data[dropped:])):
            dropped += frame
        if dropped >= len(data):
            return dropped
        used: int = super().callback_data(data[dropped:], addr)
        return dropped + used


class _TcpServer(ModbusTcpServer):
    def __init__(self, devices: list[SimDevice], address: tuple[str, int], hook: PacketHook,
                 trace_pdu: Callable[[bool, ModbusPDU], ModbusPDU],
                 unheard: Callable[[bytes], int]) -> None:
        super().__init__(devices, address=address, trace_pdu=trace_pdu)
        self._hook = hook
        self._unheard = unheard

    def callback_new_connection(self) -> ServerRequestHandler:
        return _HookedHandler(self, self._hook, self._unheard)


class _RtuServer(ModbusSerialServer):
    def __init__(self, devices: list[SimDevice], port: str, bus: ModbusRtuBus,
                 hook: PacketHook, trace_pdu: Callable[[bool, ModbusPDU], ModbusPDU]) -> None:
        # a pty refuses parity (tcsetattr EINVAL); the line's pacing counts the parity bit
        super().__init__(devices, framer=FramerType.RTU, port=port, baudrate=bus.baudrate,
                         bytesize=bus.bytesize, parity="N", stopbits=bus.stopbits,
                         trace_pdu=trace_pdu)
        self._hook = hook

    def callback_new_connection(self) -> ServerRequestHandler:
        return _HookedHandler(self, self._hook, None)


@dataclass(frozen=True, slots=True)
class _Request:
    unit: int
    function: int
    address: int


class ModbusBusSim:
    """One simulated Modbus bus (TCP or RTU) with its devices."""

    def __init__(self, bus: ModbusTcpBus | ModbusRtuBus, images: Iterable[DeviceImage],
                 faults: FaultTable, *, paced: bool = True, host: str = "127.0.0.1") -> None:
        self.bus = bus
        self.images = {image.device.unit: image for image in images}
        self.faults = faults
        self.paced = paced
        self.host = host
        self.transport: Transport = bus.type
        self.line: SerialLine | None = None
        self.port: int | None = None
        self._server: _TcpServer | _RtuServer | None = None
        self._bit_counts: dict[_Request, int] = {}
        self._late: set[asyncio.TimerHandle] = set()
        for image in self.images.values():
            faults.add_device(image.device.id)

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        devices = [SimDevice(id=unit, simdata=image.simdata(), action=self._action_for(image))
                   for unit, image in self.images.items()]
        if 0 not in self.images:
            # catches units no device answers to (pymodbus would otherwise log a traceback);
            # the packet hook turns its replies into silence (RTU) or exception 0x0B (TCP)
            devices.append(SimDevice(id=0, simdata=(
                [SimData(0, values=False, datatype=SimType.BITS)],
                [SimData(0, values=False, datatype=SimType.BITS)],
                [SimData(0, datatype=SimType.INVALID)],
                [SimData(0, datatype=SimType.INVALID)],
            )))
        if isinstance(self.bus, ModbusTcpBus):
            server: _TcpServer | _RtuServer = _TcpServer(
                devices, (self.host, 0), self._packet, self._pdu, self._unheard)
            await server.serve_forever(background=True)
            listener = server.transport
            assert isinstance(listener, asyncio.Server)
            self.port = int(listener.sockets[0].getsockname()[1])
        else:
            settings = LineSettings(self.bus.baudrate if self.paced else None,
                                    self.bus.bytesize, self.bus.parity, self.bus.stopbits)
            self.line = SerialLine(settings)
            self.line.open()
            server = _RtuServer(devices, self.line.server_path, self.bus, self._packet,
                                self._pdu)
            await server.serve_forever(background=True)
        self._server = server
        log.info("sim_bus_started bus=%s type=%s endpoint=%s devices=%d", self.bus.id,
                 self.bus.type, self.endpoint, len(self.images))

    async def stop(self) -> None:
        for timer in self._late:
            timer.cancel()
        self._late.clear()
        if self._server is not None:
            server, self._server = self._server, None
            for handler in list(server.active_connections.values()):
                with contextlib.suppress(Exception):
                    handler.close()
            await server.shutdown()  # type: ignore[no-untyped-call]
        if self.line is not None:
            await asyncio.sleep(0)  # let the serial transport drop its reader first
            self.line.close()
            self.line = None

    @property
    def endpoint(self) -> str:
        if self.line is not None:
            return self.line.client_path
        return f"{self.host}:{self.port}"

    # --- request path -------------------------------------------------------------------------

    def _pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        """Remember the bit count of coil / discrete-input reads: the datastore action is only
        told how many 16-bit words they span, and an unmapped bit must answer exception 2."""
        if not sending and pdu.function_code in (1, 2):
            key = _Request(pdu.dev_id, pdu.function_code, pdu.address)
            if len(self._bit_counts) > 1024:
                self._bit_counts.clear()
            self._bit_counts[key] = pdu.count
        return pdu

    def _action_for(self, image: DeviceImage) -> SimAction:
        async def action(function: int, start: int, address: int, count: int,
                         registers: list[int], values: list[int] | list[bool] | None,
                         ) -> ExcCodes | None:
            return self._serve(image, function, start, address, count, registers, values)

        return action

    def _serve(self, image: DeviceImage, function: int, start: int, address: int, count: int,
               registers: list[int], values: list[int] | list[bool] | None) -> ExcCodes | None:
        register = REGISTER_OF_FUNCTION.get(function)
        if register is None:
            return ExcCodes.ILLEGAL_FUNCTION
        fault = self.faults.get(image.device.id)
        if fault.mode == "exception":
            active = self.faults.active(image.device.id)
            if active.mode == "exception":
                return ExcCodes(active.exception_code)
        if register.is_bit:
            if values is not None:
                nbits = len(values)
            else:
                nbits = self._bit_counts.pop(_Request(image.device.unit, function, address), 1)
        else:
            nbits = count
        if not image.covers(register, address, nbits):
            return ExcCodes.ILLEGAL_ADDRESS
        if values is not None:
            if not image.may_write(register, address, nbits):
                return ExcCodes.ILLEGAL_ADDRESS
            image.apply_write(register, address, values)
            return None
        image.refresh(register)
        if register.is_bit:
            for bit_address, state in image.bits[register].items():
                index = bit_address // 16 - start
                if 0 <= index < len(registers):
                    mask = 1 << (bit_address % 16)
                    registers[index] = (registers[index] | mask) if state \
                        else (registers[index] & ~mask)
        else:
            for word_address, word in image.words[register].items():
                index = word_address - start
                if 0 <= index < len(registers):
                    registers[index] = word
        return None

    # --- reply path ---------------------------------------------------------------------------

    def _unheard(self, data: bytes) -> int:
        """The length of the TCP frame in front of `data` when it is whole and its device does
        not answer (fault no_reply): it neither answers nor acts on it; else 0."""
        if len(data) < 7:
            return 0
        size = 6 + int.from_bytes(data[4:6], "big")
        image = self.images.get(data[6])
        if len(data) < size or image is None \
                or self.faults.active(image.device.id).mode is not FaultMode.NO_REPLY:
            return 0
        return size

    def _packet(self, handler: ServerRequestHandler, sending: bool, data: bytes) -> bytes:
        if not data:
            return data
        tcp = self.transport == "modbus_tcp"
        unit_at = 6 if tcp else 0
        if len(data) <= unit_at + 1:
            return data
        image = self.images.get(data[unit_at])
        if not sending:  # (TCP frames to a device that does not answer: `_unheard`)
            return data
        if image is None:
            if not tcp:
                return b""  # nobody on the line has this address: silence
            function = data[7] | 0x80
            return data[:4] + (3).to_bytes(2, "big") + bytes((data[6], function, 0x0B))
        fault = self.faults.active(image.device.id)
        out = apply_fault(fault, self.transport, data, self.faults.rng)
        if out.delay > 0 and out.data:
            loop = asyncio.get_running_loop()
            timer = loop.call_later(out.delay, self._send_late, handler, out.data)
            self._late.add(timer)
            return b""
        return out.data

    def _send_late(self, handler: ServerRequestHandler, data: bytes) -> None:
        now = asyncio.get_running_loop().time()
        self._late = {t for t in self._late if not t.cancelled() and t.when() > now}
        if self._server is None or handler.transport is None or handler.is_closing:
            return
        handler.send(data)


class ModbusSim:
    """Every Modbus bus of a gateway config, simulated."""

    def __init__(self, loaded: LoadedConfig, signals: SignalTable, faults: FaultTable, *,
                 paced: bool = True, seed: int = 0) -> None:
        self.images: dict[str, DeviceImage] = {}
        self.buses: dict[str, ModbusBusSim] = {}
        by_bus: dict[str, list[DeviceImage]] = {}
        for device in loaded.config.devices:
            profile = loaded.profiles.get(device.profile)
            if not device.enabled or not isinstance(profile, ModbusProfile):
                continue
            image = DeviceImage(device, profile, signals, seed)
            self.images[device.id] = image
            by_bus.setdefault(device.bus, []).append(image)
        for bus in loaded.config.buses:
            if isinstance(bus, ModbusTcpBus | ModbusRtuBus):
                self.buses[bus.id] = ModbusBusSim(bus, by_bus.get(bus.id, []), faults,
                                                  paced=paced)

    async def start(self) -> None:
        try:
            for bus in self.buses.values():
                await bus.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for bus in self.buses.values():
            await bus.stop()

    def device_of(self, point_id: str) -> DeviceImage | None:
        device_id = point_id.split(".", 1)[0]
        return self.images.get(device_id)

    def coil(self, point_id: str) -> tuple[DeviceImage, int]:
        """The device image and address of a coil point."""
        image = self.device_of(point_id)
        point = None if image is None else image.by_id.get(point_id)
        if image is None or point is None or point.modbus.register is not RegisterType.COIL:
            raise KeyError(f"no simulated coil {point_id!r}")
        return image, point.modbus.address

    def read_point(self, point_id: str) -> Value:
        image = self.device_of(point_id)
        if image is None:
            raise KeyError(f"no simulated Modbus point {point_id!r}")
        return image.read_point(point_id)
