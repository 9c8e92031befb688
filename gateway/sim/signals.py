"""Value trajectories for simulated points, and the table that binds them to point ids.

A signal is a pure function of time: `signal.at(t)` is its value `t` seconds after it was
installed. Signals are immutable pydantic models with a `kind` tag, so the control channel and
drill files parse them at the boundary (`parse_signal`) and tests build them directly.

The `SignalTable` holds one signal per point id (`device_id.point_name`, or
`device_id.point_name.flag_name` for a flag of a status word) and evaluates it against an
injected clock. Each point starts with a default that looks like a quiet, healthy room
(`default_signal`); `set`, `replace`, `hold` and `release` change it at run time.
"""

from __future__ import annotations

import itertools
import math
import random
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

from pydantic import Field, TypeAdapter, model_validator

from gateway.clock import Clock, SystemClock
from gateway.config.profile import ModbusPoint
from gateway.field.points import BoundPoint
from gateway.strict import StrictModel

Value = float | bool | str
"""What a signal yields: an engineering number, a contact state, or text."""


class _SignalBase(StrictModel):
    """A signal's parameters, as written in a site's simulation section."""


class Constant(_SignalBase):
    """Always `value`."""

    kind: Literal["constant"] = "constant"
    value: float | bool | str

    def at(self, t: float) -> Value:
        return self.value


class Drift(_SignalBase):
    """Starts at `start` and moves `rate` units per second. With both bounds it bounces between
    them (a slow triangle wave); with one bound it stops there."""

    kind: Literal["drift"] = "drift"
    start: float
    rate: float
    low: float | None = None
    high: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Drift:
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        return self

    def at(self, t: float) -> Value:
        value = self.start + self.rate * t
        low, high = self.low, self.high
        if low is not None and high is not None:
            span = high - low
            if span <= 0:
                return low
            phase = math.fmod(value - low, 2 * span)
            if phase < 0:
                phase += 2 * span
            return low + (phase if phase <= span else 2 * span - phase)
        if low is not None:
            value = max(low, value)
        if high is not None:
            value = min(high, value)
        return value


class Noise(_SignalBase):
    """Gaussian noise of deviation `sigma` around `base`, a new draw every `interval` seconds.

    Pure: the draw for time t depends only on `seed` and the interval t falls in, so the same
    signal read twice at the same time gives the same value."""

    kind: Literal["noise"] = "noise"
    base: float = 0.0
    sigma: Annotated[float, Field(ge=0)]
    seed: int = 0
    interval: Annotated[float, Field(gt=0)] = 1.0

    def at(self, t: float) -> Value:
        if self.sigma == 0:
            return self.base
        slot = math.floor(t / self.interval)
        rng = random.Random(f"{self.seed}:{slot}")
        return self.base + rng.gauss(0.0, self.sigma)


class Step(_SignalBase):
    """`before` until `at_time` seconds, `after` from then on (numbers or contact states)."""

    kind: Literal["step"] = "step"
    before: float | bool | str
    after: float | bool | str
    at_time: Annotated[float, Field(ge=0)] = 0.0

    def at(self, t: float) -> Value:
        return self.after if t >= self.at_time else self.before


class Ramp(_SignalBase):
    """`start` until `begin`, linear to `end` over `duration` seconds, then `end`."""

    kind: Literal["ramp"] = "ramp"
    start: float
    end: float
    begin: Annotated[float, Field(ge=0)] = 0.0
    duration: Annotated[float, Field(gt=0)]

    def at(self, t: float) -> Value:
        if t <= self.begin:
            return self.start
        if t >= self.begin + self.duration:
            return self.end
        return self.start + (self.end - self.start) * (t - self.begin) / self.duration


class Scripted(_SignalBase):
    """A scripted trajectory through `(t, value)` points: linear between numeric points; held
    (a staircase) for contact states and text. Before the first point: its value; after the
    last: the last value."""

    kind: Literal["scripted"] = "scripted"
    points: tuple[tuple[float, float | bool | str], ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _sorted(self) -> Scripted:
        times = [t for t, _ in self.points]
        if times != sorted(times):
            raise ValueError("scripted points must be in time order")
        return self

    def at(self, t: float) -> Value:
        points = self.points
        if t <= points[0][0]:
            return points[0][1]
        for (t0, v0), (t1, v1) in itertools.pairwise(points):
            if t < t1:
                if _is_number(v0) and _is_number(v1) and t1 > t0:
                    a, b = float(v0), float(v1)
                    return a + (b - a) * (t - t0) / (t1 - t0)
                return v0
        return points[-1][1]


class Pulse(_SignalBase):
    """A contact that is `active` for `duty` of every `period` seconds, from `begin` on."""

    kind: Literal["pulse"] = "pulse"
    period: Annotated[float, Field(gt=0)]
    duty: Annotated[float, Field(ge=0, le=1)] = 0.5
    begin: Annotated[float, Field(ge=0)] = 0.0
    active: bool = True

    def at(self, t: float) -> Value:
        if t < self.begin:
            return not self.active
        phase = math.fmod(t - self.begin, self.period) / self.period
        return self.active if phase < self.duty else not self.active


class Sum(_SignalBase):
    """The sum of numeric signals (e.g. a drift plus noise)."""

    kind: Literal["sum"] = "sum"
    parts: tuple[Signal, ...] = Field(min_length=1)

    def at(self, t: float) -> Value:
        return math.fsum(_number(part.at(t)) for part in self.parts)


class Clamp(_SignalBase):
    """A numeric signal kept within [low, high]."""

    kind: Literal["clamp"] = "clamp"
    signal: Signal
    low: float | None = None
    high: float | None = None

    def at(self, t: float) -> Value:
        value = _number(self.signal.at(t))
        if self.low is not None:
            value = max(self.low, value)
        if self.high is not None:
            value = min(self.high, value)
        return value


Signal = Annotated[
    Constant | Drift | Noise | Step | Ramp | Scripted | Pulse | Sum | Clamp,
    Field(discriminator="kind"),
]
Sum.model_rebuild()
Clamp.model_rebuild()

SIGNAL_ADAPTER: TypeAdapter[Signal] = TypeAdapter(Signal)


def parse_signal(data: Any) -> Signal:
    """A signal from JSON-like data (`{"kind": "ramp", ...}`); a bare value means constant.
    Raises pydantic.ValidationError."""
    if isinstance(data, bool | int | float | str):
        return Constant(value=data)
    return SIGNAL_ADAPTER.validate_python(data)


def noisy(base: Signal | float, sigma: float, seed: int = 0, interval: float = 1.0) -> Signal:
    """`base` plus gaussian noise (the usual composition)."""
    base_signal = Constant(value=base) if isinstance(base, int | float) else base
    return Sum(parts=(base_signal, Noise(sigma=sigma, seed=seed, interval=interval)))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: Value) -> float:
    if isinstance(value, str):
        raise TypeError(f"text {value!r} used where a number is needed")
    return float(value)


# --- defaults: a quiet, healthy room --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Normal:
    """The healthy band of a quantity, in `unit`; or a contact's healthy state."""

    low: float | bool
    high: float | bool
    unit: str | None = None


NORMAL: dict[str, Normal] = {
    # environment
    "temperature": Normal(22.0, 24.0, "°C"),
    "air_temperature": Normal(22.0, 24.0, "°C"),
    "supply_air_temperature": Normal(18.0, 20.0, "°C"),
    "return_air_temperature": Normal(26.0, 28.0, "°C"),
    "return_air_humidity": Normal(30.0, 40.0, "%RH"),
    "battery_temperature": Normal(23.0, 25.0, "°C"),
    "cell_temperature": Normal(23.0, 25.0, "°C"),
    "block_temperature": Normal(23.5, 25.5, "°C"),
    "block_voltage": Normal(13.45, 13.65, "V"),
    "string_voltage": Normal(53.9, 54.2, "V"),
    "string_current": Normal(0.2, 0.6, "A"),
    "relative_humidity": Normal(40.0, 50.0, "%"),
    "humidity": Normal(40.0, 50.0, "%"),
    "dew_point": Normal(9.0, 12.0, "°C"),
    "h2_lel": Normal(0.0, 1.0, "%LEL"),
    "h2_ppm": Normal(0.0, 5.0, "ppm"),
    "co_ppm": Normal(0.0, 2.0, "ppm"),
    "co2_ppm": Normal(450.0, 600.0, "ppm"),
    "smoke": Normal(False, False),
    "water_leak": Normal(False, False),
    "door_open": Normal(False, False),
    "door_closed": Normal(True, True),
    "airflow": Normal(1.5, 2.5, "m/s"),
    "fan_running": Normal(True, True),
    # power distribution
    "phase_voltage": Normal(220.0, 230.0, "V"),
    "voltage": Normal(220.0, 230.0, "V"),
    "line_voltage": Normal(380.0, 400.0, "V"),
    "dc_voltage": Normal(53.0, 54.0, "V"),
    "phase_current": Normal(8.0, 15.0, "A"),
    "current": Normal(8.0, 15.0, "A"),
    "neutral_current": Normal(0.5, 2.0, "A"),
    "residual_current": Normal(50.0, 150.0, "mA"),
    "leakage_current": Normal(50.0, 150.0, "mA"),
    "frequency": Normal(49.95, 50.05, "Hz"),
    "power_factor": Normal(0.95, 0.99),
    "active_power": Normal(2.0, 5.0, "kW"),
    "reactive_power": Normal(0.3, 0.8, "kvar"),
    "apparent_power": Normal(2.2, 5.3, "kVA"),
    "voltage_thd": Normal(1.0, 3.0, "%"),
    "current_thd": Normal(3.0, 8.0, "%"),
    "insulation_resistance": Normal(800.0, 1200.0, "kΩ"),
    "breaker_tripped": Normal(False, False),
    "breaker_closed": Normal(True, True),
    "surge_arrester_fault": Normal(False, False),
    "mains_present": Normal(True, True),
    "mains_fail": Normal(False, False),
    # UPS
    "ups_on_battery": Normal(False, False),
    "ups_battery_low": Normal(False, False),
    "ups_fault": Normal(False, False),
    "ups_bypass": Normal(False, False),
    "ups_load": Normal(20.0, 40.0, "%"),
    "load_percent": Normal(20.0, 40.0, "%"),
    "input_voltage": Normal(220.0, 230.0, "V"),
    "output_voltage": Normal(219.0, 221.0, "V"),
    "ups_input_voltage": Normal(220.0, 230.0, "V"),
    "ups_output_voltage": Normal(219.0, 221.0, "V"),
    "runtime_remaining": Normal(40.0, 60.0, "min"),
    # batteries and energy storage
    "battery_soc": Normal(80.0, 95.0, "%"),
    "soc": Normal(80.0, 95.0, "%"),
    "battery_soh": Normal(95.0, 99.0, "%"),
    "soh": Normal(95.0, 99.0, "%"),
    "cell_voltage": Normal(3.30, 3.35, "V"),
    "cell_voltage_max": Normal(3.33, 3.35, "V"),
    "cell_voltage_min": Normal(3.30, 3.32, "V"),
    "battery_voltage": Normal(53.0, 54.0, "V"),
    "battery_current": Normal(-1.0, 1.0, "A"),
    "cell_voltage_delta": Normal(5.0, 20.0, "mV"),
    "bms_alarm": Normal(False, False),
    "bms_fault": Normal(False, False),
    "contactor_closed": Normal(True, True),
    # names used by the shipped profiles
    "residual_current_ma": Normal(50.0, 150.0, "mA"),
    "gas_lel": Normal(0.0, 1.0, "%LEL"),
    "voc_ppm": Normal(0.0, 5.0, "ppm"),
    "smoke_obscuration": Normal(0.0, 0.1, "%/m"),
    "detector_temperature": Normal(25.0, 28.0, "°C"),
    "cable_temperature": Normal(30.0, 35.0, "°C"),
    "cell_temperature_min": Normal(23.0, 24.0, "°C"),
    "cell_temperature_max": Normal(25.0, 26.0, "°C"),
    "phase_power_factor": Normal(0.95, 0.99),
    "phase_active_power": Normal(700.0, 1700.0, "W"),
    "energy_kwh": Normal(12000.0, 12001.0, "kWh"),
    "energy_import_kwh": Normal(12000.0, 12001.0, "kWh"),
    "operating_hours": Normal(8000.0, 8001.0, "h"),
    "cycle_count": Normal(300.0, 300.0),
    "ups_load_pct": Normal(20.0, 40.0, "%"),
    "ups_input_fault_voltage": Normal(220.0, 230.0, "V"),
    "ups_input_frequency": Normal(49.95, 50.05, "Hz"),
    "ups_output_frequency": Normal(49.98, 50.02, "Hz"),
    "ups_battery_voltage": Normal(27.0, 27.6, "V"),
    "ups_temperature": Normal(28.0, 32.0, "°C"),
    "ups_runtime": Normal(40.0, 60.0, "min"),
    "pack_current": Normal(-1.0, 1.0, "A"),
    "pack_power": Normal(-0.5, 0.5, "kW"),
    "battery_energy_charged": Normal(50000.0, 50001.0, "kWh"),
    "battery_energy_discharged": Normal(48000.0, 48001.0, "kWh"),
    "ac_remote_on": Normal(True, True),
}

_UNIT_FACTORS: dict[str, tuple[str, float]] = {
    "ma": ("A", 1e-3), "a": ("A", 1.0), "ka": ("A", 1e3),
    "mv": ("V", 1e-3), "v": ("V", 1.0), "kv": ("V", 1e3),
    "w": ("W", 1.0), "kw": ("W", 1e3), "mw": ("W", 1e6),
    "va": ("VA", 1.0), "kva": ("VA", 1e3),
    "var": ("var", 1.0), "kvar": ("var", 1e3),
    "ω": ("ohm", 1.0), "ohm": ("ohm", 1.0), "kω": ("ohm", 1e3), "kohm": ("ohm", 1e3),
    "mω": ("ohm", 1e6), "mohm": ("ohm", 1e6),
    "s": ("s", 1.0), "min": ("s", 60.0), "h": ("s", 3600.0),
    "°c": ("°C", 1.0), "degc": ("°C", 1.0), "c": ("°C", 1.0),
    "%": ("%", 1.0), "%rh": ("%", 1.0), "%lel": ("%", 1.0),
    "hz": ("Hz", 1.0), "ppm": ("ppm", 1.0),
}


def unit_factor(from_unit: str | None, to_unit: str | None) -> float:
    """How many `to_unit` one `from_unit` is (1.0 when unknown or not comparable)."""
    if not from_unit or not to_unit:
        return 1.0
    a = _UNIT_FACTORS.get(from_unit.strip().lower())
    b = _UNIT_FACTORS.get(to_unit.strip().lower())
    if a is None or b is None or a[0] != b[0]:
        return 1.0
    return a[1] / b[1]


def default_signal(*, quantity: str | None, unit: str | None, kind: str,
                   valid: tuple[float | None, float | None] = (None, None),
                   enum: Iterable[int] | None = None, seed: int = 0) -> Signal:
    """A plausible healthy-room signal for a point.

    `kind` is the point's value kind: `bool`, `string`, `int` (integer registers, counts,
    status words) or `float`. A known quantity gets a slow drift inside its normal band plus
    a little noise, converted to the point's unit; an unknown one sits at the middle of its
    valid range, or 0. Enumerated status codes default to 0 when that is a code (else the
    lowest code)."""
    normal = NORMAL.get(quantity) if quantity else None
    if kind == "bool":
        return Constant(value=bool(normal.low) if normal is not None else False)
    if kind == "string":
        return Constant(value="SIM")
    if enum is not None:
        codes = sorted(enum)
        return Constant(value=0 if 0 in codes or not codes else codes[0])
    low_valid, high_valid = valid
    if normal is not None and not isinstance(normal.low, bool) \
            and not isinstance(normal.high, bool):
        factor = unit_factor(normal.unit, unit)
        low, high = normal.low * factor, normal.high * factor
        if _inside(low, valid) and _inside(high, valid):
            return _wandering(low, high, seed)
    if low_valid is not None and high_valid is not None:
        middle = (low_valid + high_valid) / 2
    elif low_valid is not None and low_valid > 0:
        middle = low_valid
    elif high_valid is not None and high_valid < 0:
        middle = high_valid
    else:
        middle = 0.0
    return Constant(value=middle)


def _inside(value: float, valid: tuple[float | None, float | None]) -> bool:
    low, high = valid
    return (low is None or value >= low) and (high is None or value <= high)


def _wandering(low: float, high: float, seed: int) -> Signal:
    """Drifts across the middle half of [low, high] over about an hour (a quiet room's
    temperature moves about 1 °C/h, well inside ASHRAE's 5 °C/h), with noise of 1/40 of the
    band, clamped to the band."""
    span = high - low
    if span <= 0:
        return Constant(value=low)
    rng = random.Random(seed)
    start = low + span * (0.3 + 0.4 * rng.random())
    rate = span / 7200.0 * (1 if rng.random() < 0.5 else -1)
    drift = Drift(start=start, rate=rate, low=low + span / 4, high=high - span / 4)
    return Clamp(signal=noisy(drift, span / 40, seed=seed), low=low, high=high)


# --- the table -----------------------------------------------------------------------------


class Source(Protocol):
    """Anything a point's value comes from: a signal, or a follower of another point."""

    def at(self, t: float) -> Value: ...


@dataclass(slots=True)
class _Entry:
    default: Source
    signal: Source
    origin: float
    """Clock time (monotonic s) the current signal's t = 0 corresponds to."""


class SignalTable:
    """Point id → signal, evaluated on an injected clock; changeable at run time."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._start = self._clock.monotonic()
        self._entries: dict[str, _Entry] = {}
        self.generation = 0
        """Counts changes of signals, so renderings of them know when they are out of date."""

    @property
    def clock(self) -> Clock:
        return self._clock

    def define(self, point_id: str, default: Source) -> None:
        """Register a point with its default signal (t = 0 is the table's creation)."""
        self._entries[point_id] = _Entry(default, default, self._start)

    def __contains__(self, point_id: object) -> bool:
        return point_id in self._entries

    def points(self) -> list[str]:
        return sorted(self._entries)

    def _entry(self, point_id: str) -> _Entry:
        try:
            return self._entries[point_id]
        except KeyError:
            raise KeyError(f"no simulated point {point_id!r}") from None

    def signal(self, point_id: str) -> Source:
        return self._entry(point_id).signal

    def is_default(self, point_id: str) -> bool:
        entry = self._entry(point_id)
        return entry.signal is entry.default

    def value(self, point_id: str) -> Value:
        entry = self._entry(point_id)
        return entry.signal.at(self._clock.monotonic() - entry.origin)

    def set(self, point_id: str, signal: Signal) -> None:
        """Install `signal` with its t = 0 now (a ramp set now starts now)."""
        entry = self._entry(point_id)
        entry.signal, entry.origin = signal, self._clock.monotonic()
        self.generation += 1

    def replace(self, point_id: str, signal: Signal) -> None:
        """Install `signal` on the current signal's timeline (t keeps counting)."""
        self._entry(point_id).signal = signal
        self.generation += 1

    def hold(self, point_id: str) -> Value:
        """Freeze the point at its present value; returns that value."""
        value = self.value(point_id)
        self.set(point_id, Constant(value=value))
        return value

    def release(self, point_id: str) -> None:
        """Back to the default signal, on the table's timeline."""
        entry = self._entry(point_id)
        entry.signal, entry.origin = entry.default, self._start
        self.generation += 1


# --- defaults for bound points -------------------------------------------------------------


def point_kind(point: BoundPoint) -> str:
    """`bool`, `string`, `word` (an integer with flags) or `number`."""
    spec = point.spec
    kind = spec.type.value if isinstance(spec, ModbusPoint) else spec.type
    if kind in ("bool", "string"):
        return kind
    if point.flags or kind == "bitstring":
        return "word"
    return "number"


def point_default(point: BoundPoint, seed: int = 0) -> Signal:
    """The healthy-room default of one point (see `default_signal`). A status word with flags
    defaults to every flag inactive (active-low bits set)."""
    kind = point_kind(point)
    if kind == "word":
        word = sum(1 << flag.bit for flag in point.flags if flag.active_low)
        return Constant(value=float(word * point.scale + point.offset))
    return default_signal(quantity=point.quantity, unit=point.unit, kind=kind,
                          valid=(point.valid_min, point.valid_max), enum=point.enum,
                          seed=seed)


def define_points(table: SignalTable, points: Iterable[BoundPoint], seed: int = 0) -> None:
    """Register every point (and flag) of a device in `table` with its default signal; the
    noise seed of each point is derived from `seed` and its id, so runs are repeatable."""
    for point in points:
        if point.id not in table:
            table.define(point.id, point_default(point, seed=_seed(seed, point.id)))
        for flag in point.flags:
            if flag.id not in table:
                normal = NORMAL.get(flag.quantity) if flag.quantity else None
                table.define(flag.id, Constant(value=bool(normal.low) if normal else False))


def _seed(seed: int, point_id: str) -> int:
    return seed * 1_000_003 + zlib.crc32(point_id.encode())


def apply_set_flags(table: SignalTable, point: BoundPoint, word: int) -> int:
    """A status word with the flags whose signals were set explicitly applied over it (flags
    left at their default follow the word's own signal)."""
    for flag in point.flags:
        if table.is_default(flag.id):
            continue
        if bool(table.value(flag.id)) != flag.active_low:
            word |= 1 << flag.bit
        else:
            word &= ~(1 << flag.bit)
    return word
