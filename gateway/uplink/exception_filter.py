"""Report by exception: which samples of a poll cycle are worth sending uplink.

A sample passes when
- its point has not been sent before (or was forgotten);
- its quality differs from the last sent quality of the point;
- it is numeric and differs from the last *sent* value by more than the point's deadband
  (absolute; per point, else per quantity, else the default) — comparing with the last sent
  value, not the last seen one, so a slow drift is still reported once it adds up;
- it is a boolean, string or null (or its type changed) and differs from the last sent value;
- or the point's maximum interval (heartbeat) has passed since it was last sent.

Alarms and gateway state never pass through here: they are always sent. Pure and
clock-injected (`clock.monotonic()` for intervals); memory is one small entry per point, capped
by `max_points` (the least recently sent point is forgotten first, which at worst costs one
extra sample).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from gateway.clock import Clock
from gateway.field.sample import Quality, Sample, Value


@dataclass(frozen=True, slots=True)
class ExceptionPolicy:
    deadband: float = 0.0
    """Default absolute deadband; 0 sends every change."""
    max_interval: float = 300.0
    """Default heartbeat, seconds: a point is sent at least this often while it is polled."""
    deadband_by_quantity: Mapping[str, float] = field(default_factory=dict)
    max_interval_by_quantity: Mapping[str, float] = field(default_factory=dict)
    deadband_by_point: Mapping[str, float] = field(default_factory=dict)
    max_interval_by_point: Mapping[str, float] = field(default_factory=dict)
    max_points: int = 100_000

    def __post_init__(self) -> None:
        bands = [self.deadband, *self.deadband_by_quantity.values(),
                 *self.deadband_by_point.values()]
        intervals = [self.max_interval, *self.max_interval_by_quantity.values(),
                     *self.max_interval_by_point.values()]
        if any(not math.isfinite(b) or b < 0 for b in bands):
            raise ValueError("deadbands must be finite and >= 0")
        if any(not math.isfinite(i) or i <= 0 for i in intervals):
            raise ValueError("max intervals must be finite and > 0")
        if self.max_points < 1:
            raise ValueError("max_points must be >= 1")

    def limits(self, point: str, quantity: str | None) -> tuple[float, float]:
        """(deadband, max_interval) of one point."""
        band = self.deadband_by_point.get(point)
        if band is None:
            band = self.deadband_by_quantity.get(quantity, self.deadband) if quantity \
                else self.deadband
        interval = self.max_interval_by_point.get(point)
        if interval is None:
            interval = (self.max_interval_by_quantity.get(quantity, self.max_interval)
                        if quantity else self.max_interval)
        return band, interval


class _Sent:
    """What was last sent of a point, and its (deadband, max interval): one tuple for the
    points that have the same (64 bytes an entry instead of 80)."""

    __slots__ = ("limits", "quality", "sent_at", "value")

    def __init__(self, value: Value, quality: Quality, sent_at: float,
                 limits: tuple[float, float]) -> None:
        self.value = value
        self.quality = quality
        self.sent_at = sent_at
        self.limits = limits


_LOWEST, _HIGHEST = -sys.float_info.max, sys.float_info.max
"""A float between them (both included) is finite."""


def _numeric(value: Value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def changed(last: Value, new: Value, band: float) -> bool:
    """Does `new` differ from the last sent `last` enough to be reported?"""
    if _numeric(last) and _numeric(new):
        assert isinstance(last, int | float) and isinstance(new, int | float)
        if (isinstance(last, float) and not math.isfinite(last)) or \
                (isinstance(new, float) and not math.isfinite(new)):
            same = (last == new) or (last != last and new != new)
            return not same
        return abs(new - last) > band
    return type(last) is not type(new) or last != new


class ExceptionFilter:
    """Stateful per point, pure otherwise: `filter(batch)` returns the samples to send."""

    def __init__(self, policy: ExceptionPolicy, clock: Clock,
                 quantity_of: Callable[[str], str | None] | Mapping[str, str | None]
                 | None = None) -> None:
        self.policy = policy
        self._clock = clock
        if quantity_of is None:
            self._quantity: Callable[[str], str | None] = lambda _p: None
        elif callable(quantity_of):
            self._quantity = quantity_of
        else:
            mapping = quantity_of
            self._quantity = mapping.get
        self._sent: dict[str, _Sent] = {}
        self._limits: dict[tuple[float, float], tuple[float, float]] = {}
        """Each (deadband, max interval) of the points, once."""
        self._ordered = False
        """The map's order is least recently sent first (kept once it has been full)."""
        self.seen = 0
        self.passed = 0

    def __len__(self) -> int:
        return len(self._sent)

    def filter(self, samples: Iterable[Sample]) -> list[Sample]:
        now = self._clock.monotonic()
        out: list[Sample] = []
        append = out.append
        sent = self._sent
        get = sent.get
        ordered = self._ordered
        seen = 0
        # the points sent together share their `sent_at` (one float) and most share their
        # limits (one tuple): whether the heartbeat is due is worked out once per such group
        group_at: float | None = None
        group_limits: tuple[float, float] | None = None
        due = True
        try:
            for s in samples:
                seen += 1
                point, value, _ts, quality = s
                last = get(point)
                if last is None:
                    limits = self.policy.limits(point, self._quantity(point))
                    if len(sent) >= self.policy.max_points:
                        if not ordered:
                            self._order()
                            ordered = True
                        del sent[next(iter(sent))]
                    sent[point] = _Sent(value, quality, now,
                                        self._limits.setdefault(limits, limits))
                    append(s)
                    continue
                limits = last.limits
                if last.sent_at is not group_at or limits is not group_limits:
                    group_at, group_limits = last.sent_at, limits
                    due = not now - group_at < limits[1]
                sent_quality = last.quality
                if not due and (sent_quality is quality or sent_quality == quality):
                    old = last.value
                    if type(old) is float and type(value) is float \
                            and _LOWEST <= old <= _HIGHEST and _LOWEST <= value <= _HIGHEST:
                        band = limits[0]  # `changed` of finite floats:
                        if (abs(value - old) <= band) if band else value == old:
                            continue
                    elif not changed(old, value, limits[0]):
                        continue
                last.value, last.quality, last.sent_at = value, quality, now
                if ordered:  # re-inserted at the end: dict order = least recently sent
                    del sent[point]
                    sent[point] = last
                append(s)
        finally:
            self.seen += seen
        self.passed += len(out)
        return out

    def _order(self) -> None:
        """The map is full for the first time: from now on its order is kept least recently
        sent first (one sort now, then a move to the end per sent sample), so the point
        forgotten is the least recently sent. Until then (a site's points well within
        `max_points`, the usual case) no sample pays for the order."""
        entries = sorted(self._sent.items(), key=lambda kv: kv[1].sent_at)
        self._sent.clear()  # in place: `filter` holds the map
        self._sent.update(entries)
        self._ordered = True

    def forget(self, point: str) -> None:
        """The next sample of `point` passes (e.g. after its device came back online)."""
        self._sent.pop(point, None)

    def reset(self) -> None:
        """Every point's next sample passes (e.g. after a config change)."""
        self._sent.clear()
        self._limits.clear()
        self._ordered = False
