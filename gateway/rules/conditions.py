"""The condition vocabulary at run time: pure, clock-free classes with bounded state.

Everything here takes the time (`now`, seconds on a monotonic scale) as an argument, so the
engine's injected clock, a test or a drill decides what time it is.

Building blocks:

* `PointState`: what the engine knows of one point (latest value and quality, last good
  time, how long it has been invalid, its valid range) plus the windows that want its good
  samples; `beyond()` says whether its latest reading is over- or under-range;
* tests with hysteresis (`Above`, `Below`, `Outside`: `gateway.rules.hysteresis`, re-exported
  here) and `Debounce` (on/off delays: `gateway.rules.delays`, re-exported here);
* `FlatTracker` (stuck values: `track`, which a flat-line leaf shares);
* derived values: `dew_point` (Magnus), `unbalance` (max deviation from the mean, %),
  `load_pct`;
* signals: a group's worst value, mean, spread, unbalance, dew point, load.

Rates (`RateWindow`, `RateSignal`) are in `gateway.rules.rate`, re-exported here for the
engine's compiler.

The condition nodes built from them, and what *unknown* means for each, are in
`gateway.rules.nodes`. `Debounce` is where unknown (a raw result of None) is held: it keeps
the output as it was.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from itertools import repeat
from operator import attrgetter, sub
from typing import Protocol

from gateway.field.sample import Quality, Value
from gateway.rules.delays import Debounce as Debounce
from gateway.rules.delays import Delays as Delays
from gateway.rules.hysteresis import Above as Above
from gateway.rules.hysteresis import Below as Below
from gateway.rules.hysteresis import Outside as Outside
from gateway.rules.hysteresis import Test as Test
from gateway.rules.rate import Pick as Pick
from gateway.rules.rate import RateSignal as RateSignal
from gateway.rules.rate import RateWindow, rising

Number = float | int
NUMBER = (int, float)
"""`isinstance(v, NUMBER)`: as `int | float`, without building that union at every call (the
rules' hottest lines)."""
GOOD = attrgetter("good")
"""A state's `good`, read in C (`all(map(GOOD, members))`: no generator per read)."""
FLOATS = frozenset((float,))
"""The one type `GroupSignal.read`'s fast path takes."""
_INF, _NEG_INF = math.inf, -math.inf
"""The unbounded ends of a valid range: one object each (not a new float per point)."""
LARGEST = sys.float_info.max
"""A reading beyond ±this (an infinity, a huge integer) is no measurement, over-range or not
(as gateway.field.points.LARGEST)."""


class PointState:
    """What the engine keeps of one point between polls. Times are engine seconds."""

    __slots__ = ("device", "flats", "fresh", "good", "id", "invalid_since", "last_good_t",
                 "online", "rates", "seen_good", "t", "ts_ns", "valid_max", "valid_min",
                 "value")

    def __init__(self, point_id: str, device: str, start: float,
                 valid_min: float | None = None, valid_max: float | None = None) -> None:
        self.id = point_id
        self.device = device
        self.valid_min = _NEG_INF if valid_min is None else valid_min
        self.valid_max = _INF if valid_max is None else valid_max
        """The point's valid range (gateway.field.points.BoundPoint): a reading outside it has
        quality invalid and keeps its value; `beyond` says on which side."""
        self.value: Value = None
        self.good = False
        self.ts_ns = 0
        self.t = start
        self.last_good_t = start
        """Time of the freshest good sample (a late one taken earlier does not move it back);
        the engine's start until one arrives."""
        self.invalid_since: float | None = None
        self.seen_good = False
        """A good sample is known (this engine's or one carried from the previous engine)."""
        self.fresh = False
        """A good sample arrived while this engine ran (not carried over)."""
        self.online: PointState | None = None
        """The `<device>.online` point of this point's device (None for that point itself)."""
        self.rates: tuple[RateWindow, ...] = ()
        self.flats: tuple[Flat, ...] = ()
        """Tuples, most of them empty (the shared `()`): a site has thousands of points, and
        an empty list took 56 bytes, one with an item 88, a tuple of one 48."""

    def update(self, value: Value, quality: Quality, ts_ns: int, t: float) -> None:
        self.value = value
        self.ts_ns = ts_ns
        self.t = t
        if quality is Quality.GOOD and value is not None:
            if t > self.last_good_t or not self.seen_good:
                self.last_good_t = t  # a late, older sample neither refreshes nor ages it
            self.good = self.seen_good = self.fresh = True
            self.invalid_since = None
            if (self.rates or self.flats) and isinstance(value, NUMBER):
                number = float(value)
                for rate in self.rates:
                    rate.add(t, number)
                for flat in self.flats:
                    flat.add(t, number)
        else:
            self.good = False
            if quality is Quality.INVALID:
                if self.invalid_since is None:
                    self.invalid_since = t
            else:
                self.invalid_since = None

    def number(self) -> float | None:
        """The latest value as a number, or None when it is bad, missing or not numeric."""
        value = self.value
        if self.good and isinstance(value, NUMBER):
            return float(value)
        return None

    def beyond(self) -> int:
        """+1 when the latest sample is an invalid, finite number above the valid maximum
        (over-range), -1 when below the minimum (under-range), else 0: a good sample, another
        quality, no value, a boolean or text, NaN, an infinity or a number beyond ±`LARGEST`.
        A hazard limit on that side counts such a reading (gateway.rules.nodes)."""
        if self.invalid_since is None:  # the latest sample's quality is not invalid
            return 0
        value = self.value
        if not isinstance(value, NUMBER) or isinstance(value, bool):  # None, text, a flag
            return 0
        if value > self.valid_max:
            return 1 if value <= LARGEST else 0
        if value < self.valid_min:
            return -1 if value >= -LARGEST else 0
        return 0  # inside the range (invalid for another reason), or NaN

    @property
    def offline(self) -> bool:
        online = self.online
        return online is not None and online.good and online.value is False


# --- stuck values -----------------------------------------------------------------------------

class Flat(Protocol):
    """A flat-line tracker: when the good values of a point last moved by more than `epsilon`
    (`track`). A `FlatTracker`, or a flat-line leaf (gateway.rules.nodes.FlatLeaf: its own
    tracker)."""

    low: float
    high: float
    since: float | None
    """The start of the current run of values that all lie within a range of epsilon."""
    moved: bool
    """The values were seen to move by more than epsilon (the run restarted)."""

    @property
    def epsilon(self) -> float: ...

    def add(self, t: float, value: float) -> None: ...


def track(flat: Flat, t: float, value: float) -> None:
    """`flat.add`: O(1) per sample, it keeps the range of the values since `since`; when the
    range exceeds epsilon it restarts at the newest value."""
    if flat.since is None:
        flat.low = flat.high = value
        flat.since = t
        return
    low = value if value < flat.low else flat.low
    high = value if value > flat.high else flat.high
    if high - low > flat.epsilon:
        flat.low = flat.high = value
        flat.since = t
        flat.moved = True
    else:
        flat.low, flat.high = low, high


class FlatTracker:
    """A `Flat` of its own."""

    __slots__ = ("epsilon", "high", "low", "moved", "since")

    def __init__(self, epsilon: float) -> None:
        self.epsilon = flat_epsilon(epsilon)
        self.low = self.high = 0.0
        self.since: float | None = None
        self.moved = False

    def add(self, t: float, value: float) -> None:
        track(self, t, value)

    def flat_for(self, now: float) -> float:
        return 0.0 if self.since is None else now - self.since


def flat_epsilon(epsilon: float) -> float:
    """The plan's float, not a new one per tracker (`abs` of a positive float is a copy)."""
    return epsilon if epsilon > 0 else abs(epsilon)


# --- derived values -------------------------------------------------------------------------

MAGNUS_A, MAGNUS_B = 17.62, 243.12
"""Magnus coefficients over water (Sonntag 1990), good from −45 to 60 °C."""


def dew_point(temperature: float, relative_humidity: float) -> float | None:
    """Dew point in °C from air temperature (°C) and relative humidity (%), Magnus formula."""
    if relative_humidity <= 0 or relative_humidity > 100.5 or temperature <= -MAGNUS_B:
        return None
    ratio = (100.0 if relative_humidity > 100.0 else relative_humidity) / 100.0  # min()
    if ratio <= 0.0:  # a humidity so near 0 that the division underflows (5e-324): as 0 %
        return None
    gamma = math.log(ratio) + MAGNUS_A * temperature / (MAGNUS_B + temperature)
    return MAGNUS_B * gamma / (MAGNUS_A - gamma)


def unbalance(values: Sequence[float]) -> float | None:
    """Voltage unbalance in %: the largest deviation from the mean over the mean (NEMA-style
    estimate of the GB/T 15543 negative-sequence ratio). None when the supply is dead."""
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    if mean <= 1.0:
        return None
    if mean < _INF:  # finite, so is every value: fl(v − mean) rises with v and fl(mean − v)
        # is −fl(v − mean), so the largest |v − mean| is that of the largest or the smallest
        # value — the same float as over every value, two C passes instead of a chain of maps
        high, low = max(values) - mean, mean - min(values)
        return (high if high > low else low) / mean * 100.0
    largest: float = max(map(abs, map(sub, values, repeat(mean))))  # each |v − mean|, in C
    return largest / mean * 100.0


def load_pct(currents: Sequence[float], rating: float) -> float | None:
    """The largest current as % of a rating; None without a positive rating or a current."""
    if rating <= 0 or not currents:
        return None
    return max(currents) / rating * 100.0


# --- signals --------------------------------------------------------------------------------

class Signal(Protocol):
    def read(self, now: float) -> float | None: ...


class ValueSignal:
    """Each member's latest good value; for a group the worst one by `key`."""

    __slots__ = ("key", "members", "single")

    def __init__(self, members: Sequence[PointState], key: Pick) -> None:
        self.members = tuple(members)
        self.single = self.members[0] if len(self.members) == 1 else None
        self.key = key

    def read(self, now: float) -> float | None:
        single = self.single
        if single is not None:
            value = single.value
            if single.good and isinstance(value, NUMBER):
                return float(value)
            return None
        best: float | None = None
        best_key = -math.inf
        key = self.key
        for member in self.members:
            number = member.number()
            if number is not None:
                k = key(number)
                if best is None or k > best_key:
                    best, best_key = number, k
        return best

    def read_beyond(self, side: int) -> float | None:
        """As `read`, the members whose latest reading is beyond their valid range on `side`
        (`PointState.beyond`) counted with their reading; None when no member is."""
        values = beyond_values(self.members, side)
        return None if values is None else max(values, key=self.key)


class GroupSignal:
    """A value computed from the good values of several members. `monotone`: the value never
    falls when a member's rises (a mean, the load of the largest current), so a member's
    over- or under-range reading may be counted (`read_beyond`); a spread or an unbalance is
    not."""

    __slots__ = ("func", "members", "minimum", "monotone")

    def __init__(self, members: Sequence[PointState],
                 func: Callable[[list[float]], float | None], minimum: int,
                 monotone: bool = False) -> None:
        self.members = tuple(members)
        self.func = func
        self.minimum = minimum
        self.monotone = monotone

    def read(self, now: float) -> float | None:
        # the good members' values; while each is a float (nearly always: their types checked
        # in C), that is each member's number() (`float()` of a float is itself), with fewer
        # steps a member (a room's group: tens of members a read)
        values: list[float] = [m.value for m in self.members if m.good]  # type: ignore[misc]
        if not FLOATS.issuperset(map(type, values)):
            values = [v if type(v) is float else float(v) for m in self.members
                      if m.good and (type(v := m.value) is float or isinstance(v, NUMBER))]
        if len(values) < self.minimum:
            return None
        return self.func(values)

    def read_beyond(self, side: int) -> float | None:
        """As `read`, the members beyond their valid range on `side` counted with their
        reading; None when no member is, or the function is not `monotone`."""
        values = beyond_values(self.members, side) if self.monotone else None
        if values is None or len(values) < self.minimum:
            return None
        return self.func(values)


def beyond_values(members: Sequence[PointState], side: int) -> list[float] | None:
    """The good numbers of `members` and the readings of those beyond their valid range on
    `side` (`PointState.beyond`), in member order; None when no member is beyond."""
    values: list[float] = []
    found = False
    for member in members:
        number = member.number()
        if number is None:
            if member.good or member.beyond() != side:
                continue
            number = float(member.value)  # type: ignore[arg-type]  # beyond: a number
            found = True
        values.append(number)
    return values if found else None


def spread_of(values: list[float]) -> float:
    return max(values) - min(values)


def mean_of(values: list[float]) -> float:
    return sum(values) / len(values)


class DewPointSignal:
    """Dew point from the temperature and humidity members of a device or room. Members of
    one device are paired; a room without pairs uses its mean temperature and humidity."""

    __slots__ = ("key", "pairs", "rh", "temperature")

    def __init__(self, temperature: Sequence[PointState], rh: Sequence[PointState],
                 key: Pick) -> None:
        self.temperature = tuple(temperature)
        self.rh = tuple(rh)
        self.pairs = tuple((t, h) for t in self.temperature for h in self.rh
                           if t.device == h.device)
        self.key = key

    def read(self, now: float) -> float | None:
        if self.pairs:
            best: float | None = None
            best_key = -math.inf
            key = self.key
            for t_state, h_state in self.pairs:  # number() of each inline
                t, h = t_state.value, h_state.value
                if not (t_state.good and h_state.good):
                    continue
                if type(t) is not float:  # (a float is its own float(): no call for it)
                    if not isinstance(t, NUMBER):
                        continue
                    t = float(t)
                if type(h) is not float:
                    if not isinstance(h, NUMBER):
                        continue
                    h = float(h)
                dp = dew_point(t, h)  # (a call: tests/rules/test_binding_faults makes it fail)
                if dp is not None:
                    k = dp if key is rising else key(dp)  # a pure function of the value
                    if best is None or k > best_key:
                        best, best_key = dp, k
            return best
        temperatures = [n for n in (m.number() for m in self.temperature) if n is not None]
        humidities = [n for n in (m.number() for m in self.rh) if n is not None]
        if not temperatures or not humidities:
            return None
        return dew_point(mean_of(temperatures), mean_of(humidities))
