"""Simulated Modbus devices: a profile's register map served by pymodbus, fed by signals.

`DeviceImage` is one device's register map: the addresses its profile defines (per register
type; everything else is unmapped and answers exception 2, illegal data address), the
registers rendered from the `SignalTable` at read time, and writes by the gateway turned back
into held signal values (so a coil the gateway switched on reads back on, and `read_point`
shows it).

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
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimAction, SimData, SimDevice

from gateway.config.loader import LoadedConfig
from gateway.config.profile import DataType, ModbusPoint, ModbusProfile, RegisterType
from gateway.config.site import Device, ModbusRtuBus, ModbusTcpBus
from gateway.field.codec import decode, encode
from gateway.field.points import BoundPoint, bind_points
from gateway.sim.faults import FaultTable, Transport, apply_fault
from gateway.sim.signals import Constant, SignalTable, Value, apply_set_flags, define_points
from gateway.sim.wire import LineSettings, SerialLine

log = logging.getLogger(__name__)

REGISTER_OF_FUNCTION: dict[int, RegisterType] = {
    1: RegisterType.COIL, 5: RegisterType.COIL, 15: RegisterType.COIL,
    2: RegisterType.DISCRETE_INPUT,
    3: RegisterType.HOLDING, 6: RegisterType.HOLDING, 16: RegisterType.HOLDING,
    22: RegisterType.HOLDING, 23: RegisterType.HOLDING,
    4: RegisterType.INPUT,
}
_TUPLE_ORDER = (RegisterType.COIL, RegisterType.DISCRETE_INPUT, RegisterType.HOLDING,
                RegisterType.INPUT)
_INT_RANGE: dict[DataType, tuple[int, int]] = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
    DataType.UINT64: (0, 2**64 - 1),
}
_FLOAT_MAX = {DataType.FLOAT32: 3.4028234e38, DataType.FLOAT64: 1.7976931348623157e308}

def bind_all_points(device: Device, profile: ModbusProfile) -> list[BoundPoint]:
    """Every point of the profile bound to `device` (with its scale/offset overrides), disabled
    ones included: the physical device still has them."""
    points = {name: o.model_copy(update={"enabled": True}) for name, o in device.points.items()}
    return bind_points(device.model_copy(update={"points": points}), profile)


def to_raw(point: BoundPoint, value: Value) -> int | float | bool | str:
    """The raw register value for an engineering value: (value - offset) / scale, rounded and
    clamped to the type's range for integers."""
    spec = point.modbus
    if spec.type is DataType.BOOL:
        return bool(value)
    if spec.type is DataType.STRING:
        return str(value)
    if isinstance(value, str):
        raise TypeError(f"{point.id}: text {value!r} for a numeric point")
    raw = (float(value) - point.offset) / point.scale if point.scale else float(value)
    limits = _INT_RANGE.get(spec.type)
    if limits is not None:
        if raw != raw:  # NaN has no integer form
            return 0
        return max(limits[0], min(limits[1], round(raw)))
    top = _FLOAT_MAX[spec.type]
    return max(-top, min(top, raw)) if raw == raw else raw


def to_engineering(point: BoundPoint, raw: int | float | bool | str) -> Value:
    if isinstance(raw, bool | str):
        return raw
    return raw * point.scale + point.offset


def _physical_bit(spec: ModbusPoint) -> int:
    assert spec.bit is not None
    return (spec.bit + 8) % 16 if spec.order.swaps_bytes else spec.bit


RENDER_PERIOD = 0.1
"""Seconds a device image's rendering of its signals is reused (see DeviceImage.refresh)."""

LOG_LIMIT = 20_000
"""Entries a device image's coil and input log keeps (the oldest are dropped)."""


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One line of a simulated device's coil and input log: the evidence of a drill."""

    t: float
    """The simulator's clock (monotonic s)."""
    point: str
    value: Value
    kind: str
    """`write` (the gateway wrote a coil; logged even when the value did not change) or
    `change` (a coil or discrete input changed, e.g. a fan's airflow switch)."""


class DeviceImage:
    """One simulated Modbus device's register map and contents."""

    def __init__(self, device: Device, profile: ModbusProfile, signals: SignalTable,
                 seed: int = 0) -> None:
        self.device = device
        self.profile = profile
        self.signals = signals
        self.points = bind_all_points(device, profile)
        define_points(signals, self.points, seed)
        self.by_id: dict[str, BoundPoint] = {p.id: p for p in self.points}
        self.flag_owner: dict[str, tuple[BoundPoint, int]] = {}
        self.by_type: dict[RegisterType, list[BoundPoint]] = {r: [] for r in RegisterType}
        self.mapped: dict[RegisterType, set[int]] = {r: set() for r in RegisterType}
        self.writable: dict[RegisterType, set[int]] = {r: set() for r in RegisterType}
        for point in self.points:
            spec = point.modbus
            self.by_type[spec.register].append(point)
            span = range(spec.address, spec.address + spec.width)
            self.mapped[spec.register].update(span)
            if spec.writable:
                self.writable[spec.register].update(span)
            for flag in point.flags:
                self.flag_owner[flag.id] = (point, flag.bit)
        self._covered = {(r, a) for r in (RegisterType.HOLDING, RegisterType.INPUT)
                         for p in self.by_type[r] if p.modbus.type is not DataType.BOOL
                         for a in range(p.modbus.address, p.modbus.address + p.modbus.width)}
        self.words: dict[RegisterType, dict[int, int]] = {
            RegisterType.HOLDING: {}, RegisterType.INPUT: {}}
        self.bits: dict[RegisterType, dict[int, bool]] = {
            RegisterType.COIL: {}, RegisterType.DISCRETE_INPUT: {}}
        self._rendered: dict[RegisterType, tuple[int, float]] = {}
        self.log: deque[LogEntry] = deque(maxlen=LOG_LIMIT)
        self.stuck: dict[int, bool] = {}
        """Coil address → the state a stuck relay stays in whatever is written."""
        for register in RegisterType:
            self.refresh(register)

    # --- map ------------------------------------------------------------------------------

    def covers(self, register: RegisterType, address: int, count: int) -> bool:
        mapped = self.mapped[register]
        return all(a in mapped for a in range(address, address + count))

    def may_write(self, register: RegisterType, address: int, count: int) -> bool:
        writable = self.writable[register]
        return all(a in writable for a in range(address, address + count))

    def simdata(self) -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
        """pymodbus blocks: one per contiguous run of mapped addresses (split where
        writability changes), so the gaps of the map stay invalid."""
        blocks: list[list[SimData]] = []
        for register in _TUPLE_ORDER:
            runs = _runs(self.mapped[register], self.writable[register])
            if register.is_bit:
                bits = self.bits[register]
                block = [SimData(start, values=[bits.get(a, False)
                                                for a in range(start, start + count)],
                                 datatype=SimType.BITS, readonly=not writable)
                         for start, count, writable in runs]
                # pymodbus needs one bit block per type; an empty type gets a placeholder
                # that the action refuses (the address is not in `mapped`).
                blocks.append(block or [SimData(0, values=False, datatype=SimType.BITS)])
            else:
                words = self.words[register]
                block = [SimData(start, values=[words.get(a, 0)
                                                for a in range(start, start + count)],
                                 datatype=SimType.REGISTERS, readonly=not writable)
                         for start, count, writable in runs]
                blocks.append(block or [SimData(0, datatype=SimType.INVALID)])
        return blocks[0], blocks[1], blocks[2], blocks[3]

    # --- contents -------------------------------------------------------------------------

    def refresh(self, register: RegisterType) -> None:
        """Render the current signal values of every point of `register` into the image.

        A rendering is reused for `RENDER_PERIOD` seconds unless a signal changed since:
        trajectories move slowly, and a device polled flat out then costs the simulator
        little; a scripted change (a drill) still shows on the very next read."""
        table = self.signals
        now = table.clock.monotonic()
        rendered = self._rendered.get(register)
        if rendered is not None and rendered[0] == table.generation \
                and now - rendered[1] < RENDER_PERIOD:
            return
        self._rendered[register] = (table.generation, now)
        if register.is_bit:
            bits = self.bits[register]
            for point in self.by_type[register]:
                address = point.modbus.address
                value = self.stuck.get(address, bool(table.value(point.id))) \
                    if register is RegisterType.COIL else bool(table.value(point.id))
                if address in bits and bits[address] != value:
                    self.log.append(LogEntry(now, point.id, value, "change"))
                bits[address] = value
            return
        words = self.words[register]
        points = self.by_type[register]
        for point in points:
            spec = point.modbus
            if spec.type is DataType.BOOL:
                continue
            raw = to_raw(point, table.value(point.id))
            if point.flags:
                raw = apply_set_flags(self.signals, point, int(raw))
            for offset, word in enumerate(encode(raw, spec.type, spec.order, spec.length)):
                words[spec.address + offset] = word
        for point in points:
            spec = point.modbus
            if spec.type is not DataType.BOOL:
                continue
            if (register, spec.address) in self._covered and table.is_default(point.id):
                continue  # a whole-word point owns this register unless the bit was set
            mask = 1 << _physical_bit(spec)
            word = words.get(spec.address, 0)
            words[spec.address] = (word | mask) if table.value(point.id) else (word & ~mask)

    def registers_of(self, point: BoundPoint) -> list[int]:
        spec = point.modbus
        words = self.words[spec.register]
        return [words.get(a, 0) for a in range(spec.address, spec.address + spec.width)]

    def decode_point(self, point: BoundPoint) -> Value:
        spec = point.modbus
        if spec.register.is_bit:
            return self.bits[spec.register].get(spec.address, False)
        return to_engineering(point, decode(self.registers_of(point), spec.type, spec.order,
                                            spec.bit))

    def read_point(self, point_id: str) -> Value:
        """The value a client reading now would decode (flags: `device.point.flag`)."""
        owner = self.flag_owner.get(point_id)
        point = owner[0] if owner else self.by_id.get(point_id)
        if point is None:
            raise KeyError(f"no simulated point {point_id!r}")
        self.refresh(point.modbus.register)
        if owner is not None:
            flag = next(f for f in point.flags if f.id == point_id)
            raw = decode(self.registers_of(point), point.modbus.type, point.modbus.order)
            return bool((int(raw) >> flag.bit) & 1) != flag.active_low
        return self.decode_point(point)

    def apply_write(self, register: RegisterType, address: int,
                    values: Sequence[int] | Sequence[bool]) -> None:
        """Take a write by the gateway: update the image and hold every point it touched at its
        new value (writes stay visible on later reads)."""
        self.refresh(register)
        end = address + len(values)
        if register.is_bit:
            now = self.signals.clock.monotonic()
            for offset, bit in enumerate(values):
                self.bits[register][address + offset] = bool(bit)
                point = next((p for p in self.by_type[register]
                              if p.modbus.address == address + offset), None)
                if point is not None:
                    self.log.append(LogEntry(now, point.id, bool(bit), "write"))
            for stuck_at, state in self.stuck.items():
                if address <= stuck_at < end:
                    self.bits[register][stuck_at] = state
        else:
            for offset, word in enumerate(values):
                self.words[register][address + offset] = int(word) & 0xFFFF
        for point in self.by_type[register]:
            spec = point.modbus
            if spec.address >= end or spec.address + spec.width <= address:
                continue
            self.signals.set(point.id, Constant(value=self.decode_point(point)))
            for flag in point.flags:
                self.signals.release(flag.id)


def _runs(addresses: set[int], writable: set[int]) -> list[tuple[int, int, bool]]:
    """(start, count, writable) for each contiguous run of `addresses`."""
    runs: list[tuple[int, int, bool]] = []
    for address in sorted(addresses):
        flag = address in writable
        if runs:
            start, count, run_flag = runs[-1]
            if start + count == address and run_flag == flag:
                runs[-1] = (start, count + 1, flag)
                continue
        runs.append((address, 1, flag))
    return runs


# --- servers ---------------------------------------------------------------------------------

PacketHook = Callable[[ServerRequestHandler, bool, bytes], bytes]


def _hooked_handler(server: ModbusTcpServer | ModbusSerialServer,
                    hook: PacketHook) -> ServerRequestHandler:
    """A connection handler whose packet hook knows its connection (to send a reply late)."""
    cell: list[ServerRequestHandler] = []

    def trace(sending: bool, data: bytes) -> bytes:
        return hook(cell[0], sending, data)

    handler = ServerRequestHandler(server, trace, server.trace_pdu,  # type: ignore[no-untyped-call]
                                   server.trace_connect)
    cell.append(handler)
    return handler


class _TcpServer(ModbusTcpServer):
    def __init__(self, devices: list[SimDevice], address: tuple[str, int], hook: PacketHook,
                 trace_pdu: Callable[[bool, ModbusPDU], ModbusPDU]) -> None:
        super().__init__(devices, address=address, trace_pdu=trace_pdu)
        self._hook = hook

    def callback_new_connection(self) -> ServerRequestHandler:
        return _hooked_handler(self, self._hook)


class _RtuServer(ModbusSerialServer):
    def __init__(self, devices: list[SimDevice], port: str, bus: ModbusRtuBus,
                 hook: PacketHook, trace_pdu: Callable[[bool, ModbusPDU], ModbusPDU]) -> None:
        # a pty refuses parity (tcsetattr EINVAL); the line's pacing counts the parity bit
        super().__init__(devices, framer=FramerType.RTU, port=port, baudrate=bus.baudrate,
                         bytesize=bus.bytesize, parity="N", stopbits=bus.stopbits,
                         trace_pdu=trace_pdu)
        self._hook = hook

    def callback_new_connection(self) -> ServerRequestHandler:
        return _hooked_handler(self, self._hook)


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
                devices, (self.host, 0), self._packet, self._pdu)
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

    def _packet(self, handler: ServerRequestHandler, sending: bool, data: bytes) -> bytes:
        if not sending or not data:
            return data
        tcp = self.transport == "modbus_tcp"
        unit_at = 6 if tcp else 0
        if len(data) <= unit_at + 1:
            return data
        image = self.images.get(data[unit_at])
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
