"""The signal table: which signal (or follower) gives each simulated point its value, evaluated
on an injected clock and changeable at run time. The signal kinds (gateway.sim.signal_kinds)
and the healthy-room defaults (gateway.sim.normal) are re-exported here.

The `SignalTable` holds one signal per point id (`device_id.point_name`, or
`device_id.point_name.flag_name` for a flag of a status word). Each point starts with a
default that looks like a quiet, healthy room (gateway.sim.normal); `set`, `replace`, `hold`
and `release` change it at run time.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from typing import Protocol

from gateway.clock import Clock, SystemClock
from gateway.field.points import BoundPoint
from gateway.records import dataclass
from gateway.sim.normal import (
    NORMAL,
    Normal,
    default_signal,
    point_default,
    point_kind,
    unit_factor,
)
from gateway.sim.signal_kinds import (
    Clamp,
    Constant,
    Drift,
    Noise,
    Pulse,
    Ramp,
    Scripted,
    Signal,
    Step,
    Sum,
    Value,
    noisy,
    parse_signal,
)

__all__ = ["NORMAL", "Clamp", "Constant", "Drift", "Entry", "Noise", "Normal", "Pulse",
           "Ramp", "Scripted", "Signal", "SignalTable", "Source", "Step", "Sum", "Value",
           "apply_set_flags", "default_signal", "define_points", "noisy", "parse_signal",
           "point_default", "point_kind", "unit_factor"]


class Source(Protocol):
    """Anything a point's value comes from: a signal, or a follower of another point."""

    def at(self, t: float) -> Value: ...


@dataclass(slots=True)
class Entry:
    """One point's signals: its value at clock time `now` is `signal.at(now - origin)`."""

    default: Source
    signal: Source
    origin: float
    """Clock time (monotonic s) the current signal's t = 0 corresponds to."""


class SignalTable:
    """Point id → signal, evaluated on an injected clock; changeable at run time."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._start = self._clock.monotonic()
        self._entries: dict[str, Entry] = {}
        self.generation = 0
        """Counts changes of signals, so renderings of them know when they are out of date."""

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def entries(self) -> Mapping[str, Entry]:
        """Point id → its entry, read-only: for a renderer that evaluates many points at one
        time (gateway.sim.modbus_image) without a lookup and a clock reading per point."""
        return self._entries

    def define(self, point_id: str, default: Source) -> None:
        """Register a point with its default signal (t = 0 is the table's creation)."""
        self._entries[point_id] = Entry(default, default, self._start)

    def __contains__(self, point_id: object) -> bool:
        return point_id in self._entries

    def points(self) -> list[str]:
        return sorted(self._entries)

    def _entry(self, point_id: str) -> Entry:
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
