"""The healthy-room defaults of simulated points: each quantity's normal band (`NORMAL`), unit
conversion, and the default signal of a point (`default_signal`, `point_default`) — a slow
drift inside the band plus a little noise, so an unchanged simulated site raises no alarm.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from gateway.config.profile import ModbusPoint
from gateway.field.points import BoundPoint, scaled
from gateway.records import dataclass
from gateway.sim.signal_kinds import Clamp, Constant, Drift, Signal, noisy


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
        return Constant(value=float(scaled(word, point.scale, point.offset)))
    return default_signal(quantity=point.quantity, unit=point.unit, kind=kind,
                          valid=(point.valid_min, point.valid_max), enum=point.enum,
                          seed=seed)
