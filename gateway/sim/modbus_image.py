"""One simulated Modbus device's register map, rendered from its signals.

`DeviceImage` holds the addresses a device's profile defines (per register type; everything
else is unmapped and answers exception 2, illegal data address), the registers rendered from
the `SignalTable` at read time, and writes by the gateway turned back into held signal values
(so a coil the gateway switched on reads back on, and `read_point` shows it). The servers that
answer with it are gateway.sim.modbus_sim's.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Sequence

from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData

from gateway.config.profile import DataType, ModbusPoint, ModbusProfile, RegisterType
from gateway.config.section import replaced
from gateway.config.site import Device
from gateway.field.codec import decode, encode
from gateway.field.points import BoundPoint, bind_points, scaled
from gateway.records import dataclass
from gateway.sim.compiled import ValueAt, compile_signal
from gateway.sim.signals import Constant, SignalTable, Value, apply_set_flags, define_points

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
    points = {name: replaced(o, enabled=True) for name, o in device.points.items()}
    return bind_points(replaced(device, points=points), profile)


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


_STRUCT_CODE = {DataType.INT16: "h", DataType.UINT16: "H", DataType.INT32: "i",
                DataType.UINT32: "I", DataType.INT64: "q", DataType.UINT64: "Q",
                DataType.FLOAT32: "f", DataType.FLOAT64: "d"}


def register_encoder(point: BoundPoint) -> Callable[[Value], list[int]]:
    """`encode(to_raw(point, value), ...)` for one point, with the struct work done once: a
    number is `to_raw`'s arithmetic and one precompiled pack and unpack (a byte-swapped order
    reads the words little-endian, a word-swapped one reverses them); strings and bits use the
    generic codec."""
    spec = point.modbus
    code = _STRUCT_CODE.get(spec.type)
    if code is None:
        return lambda value: encode(to_raw(point, value), spec.type, spec.order, spec.length)
    pack = struct.Struct(">" + code).pack
    unpack = struct.Struct(f"{'<' if spec.order.swaps_bytes else '>'}{spec.width}H").unpack
    reverse = spec.order.swaps_words and spec.width > 1
    offset, scale = point.offset, point.scale
    limits = _INT_RANGE.get(spec.type)
    low, high = limits if limits is not None else (-_FLOAT_MAX[spec.type],
                                                     _FLOAT_MAX[spec.type])

    def raw_of(value: Value) -> float:  # to_raw's arithmetic, inlined
        if isinstance(value, str):
            raise TypeError(f"{point.id}: text {value!r} for a numeric point")
        return (float(value) - offset) / scale if scale else float(value)

    def words(raw: float) -> list[int]:
        registers = list(unpack(pack(raw)))
        if reverse:
            registers.reverse()
        return registers

    if limits is not None:
        def integer(value: Value) -> list[int]:
            raw = raw_of(value)
            if raw != raw:  # NaN has no integer form
                return words(0)
            return words(max(low, min(high, round(raw))))

        return integer

    def real(value: Value) -> list[int]:
        raw = raw_of(value)
        return words(max(low, min(high, raw)) if raw == raw else raw)

    return real


def to_engineering(point: BoundPoint, raw: int | float | bool | str) -> Value:
    if isinstance(raw, bool | str):
        return raw
    return scaled(raw, point.scale, point.offset)


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


class _Render:
    """How one point is rendered: its signal compiled (gateway.sim.compiled) and its register
    encoder, until the point gets another signal; a constant whole-word point's registers are
    converted once, not at every poll (much of a quiet room is constant)."""

    __slots__ = ("address", "constant", "encoder", "pid", "point", "registers", "signal",
                 "value_at")

    def __init__(self, point: BoundPoint, encoder: Callable[[Value], list[int]] | None) -> None:
        self.point, self.pid, self.address = point, point.id, point.modbus.address
        self.encoder = encoder
        self.signal: object = None
        self.value_at: ValueAt = compile_signal(Constant(value=False))
        self.constant = False
        self.registers: list[int] | None = None

    def follow(self, signal: object) -> None:
        self.signal, self.value_at = signal, compile_signal(signal)
        self.constant, self.registers = isinstance(signal, Constant), None


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
        self._plan = {r: [(p, p.modbus) for p in self.by_type[r]
                          if r.is_bit or p.modbus.type is not DataType.BOOL] for r in RegisterType}
        """What refresh renders, per register type: bits, or whole-word values…"""
        self._bits_in_words = {r: [(p, p.modbus) for p in self.by_type[r]
                                   if not r.is_bit and p.modbus.type is DataType.BOOL]
                               for r in RegisterType}
        """…and the single bits of words, applied over them."""
        self._rendered: dict[RegisterType, tuple[int, float]] = {}
        self._renders = {r: [_Render(p, register_encoder(p) if not r.is_bit else None)
                             for p, _ in self._plan[r]] for r in RegisterType}
        """Per register type, each point's rendering state, in `_plan`'s order."""
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
        entries = table.entries
        if register.is_bit:
            bits = self.bits[register]
            stuck = self.stuck if register is RegisterType.COIL else {}
            for render in self._renders[register]:
                entry = entries[render.pid]
                if entry.signal is not render.signal:
                    render.follow(entry.signal)
                address = render.address
                value = stuck.get(address, bool(render.value_at(now - entry.origin)))
                if address in bits and bits[address] != value:
                    self.log.append(LogEntry(now, render.pid, value, "change"))
                bits[address] = value
            return
        words = self.words[register]
        for render in self._renders[register]:
            entry = entries[render.pid]
            if entry.signal is not render.signal:
                render.follow(entry.signal)
            registers = render.registers
            if registers is None:
                point = render.point
                if point.flags:
                    raw = apply_set_flags(table, point, int(to_raw(point, table.value(point.id))))
                    spec = point.modbus
                    registers = encode(raw, spec.type, spec.order, spec.length)
                else:
                    assert render.encoder is not None
                    registers = render.encoder(render.value_at(now - entry.origin))
                    if render.constant:
                        render.registers = registers
            address = render.address
            for word in registers:
                words[address] = word
                address += 1
        for point, spec in self._bits_in_words[register]:
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
