"""Value trajectories for simulated points: the signal kinds (constant, drift, noise, step,
ramp, scripted, pulse, sum, clamp).

A signal is a pure function of time: `signal.at(t)` is its value `t` seconds after it was
installed. Signals are immutable pydantic models with a `kind` tag, so the control channel and
drill files parse them at the boundary (`parse_signal`) and tests build them directly. The
table that binds them to point ids is gateway.sim.signals (which re-exports these); the
healthy-room defaults are gateway.sim.normal's.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import struct
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, model_validator

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

    Pure: the draw for time t depends only on `seed` and the interval t falls in (`gauss`), so
    the same signal read twice at the same time gives the same value."""

    kind: Literal["noise"] = "noise"
    base: float = 0.0
    sigma: Annotated[float, Field(ge=0)]
    seed: int = 0
    interval: Annotated[float, Field(gt=0)] = 1.0

    def at(self, t: float) -> Value:
        if self.sigma == 0:
            return self.base
        return self.base + self.sigma * gauss(self.seed, math.floor(t / self.interval))


_MASK64 = (1 << 64) - 1
_KEY = struct.Struct("<QQ")
_TWO_PI = 2.0 * math.pi
_BLAKE2B_16 = hashlib.blake2b(digest_size=16)
"""Never updated: `gauss` hashes with copies of it."""


def gauss(seed: int, slot: int) -> float:
    """A standard normal draw that is a pure function of (`seed`, `slot`): counter-based, no
    generator state. BLAKE2b of the pair gives two 53-bit uniforms, made normal by Box-Muller.
    About 1.4 us a draw, where seeding a Mersenne Twister per draw (`random.Random(f"{seed}:
    {slot}")`, before) took 15 us: the simulator draws one for every noisy point at every poll
    (half a million in a 2-hour drill)."""
    digest = _BLAKE2B_16.copy()  # a copy of a fresh hasher: cheaper than making one
    digest.update(_KEY.pack(seed & _MASK64, slot & _MASK64))
    a, b = _KEY.unpack(digest.digest())
    u1 = ((a >> 11) + 1) * 2.0**-53  # (0, 1]: the log is finite
    u2 = (b >> 11) * 2.0**-53
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(_TWO_PI * u2)


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
        if len(self.parts) == 2:  # the usual drift plus noise: a + b is fsum's exact rounding
            first, second = self.parts
            total = _number(first.at(t)) + _number(second.at(t))
            if total - total == 0.0:  # finite (fsum raises on inf - inf and on overflow)
                return total
        return math.fsum([_number(part.at(t)) for part in self.parts])


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
    if type(value) is float:
        return value
    if isinstance(value, str):
        raise TypeError(f"text {value!r} used where a number is needed")
    return float(value)
