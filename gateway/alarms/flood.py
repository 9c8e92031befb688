"""Alarm-rate bookkeeping, pure: flood detection (> N activations in a window, ISA-18.2 /
EEMUA 191: more than 10 in 10 minutes) and first-out per room."""

from __future__ import annotations

from collections import deque
from typing import Any

from gateway.alarms.lifecycle import AlarmKey


class FloodDetector:
    """A flood begins when more than `count` activations fall within `window` seconds; its
    first-out is the oldest activation in the window at that moment (the one that started the
    burst). It ends when the activations within the window drop to `clear_count` or fewer."""

    def __init__(self, count: int, window: float, clear_count: int | None = None) -> None:
        if count < 1 or window <= 0:
            raise ValueError("flood_count must be >= 1 and flood_window > 0")
        self.count = count
        self.window = window
        self.clear_count = count // 2 if clear_count is None else clear_count
        self._acts: deque[tuple[float, int, AlarmKey]] = deque(maxlen=max(4 * count, 64))
        self.active = False
        self.first_out: AlarmKey | None = None
        self.since_ns: int | None = None

    def __len__(self) -> int:
        return len(self._acts)

    def _prune(self, mono: float) -> None:
        acts = self._acts
        while acts and mono - acts[0][0] > self.window:
            acts.popleft()

    def record(self, mono: float, now_ns: int, key: AlarmKey) -> bool:
        """Count one activation; True when it starts a flood."""
        self._acts.append((mono, now_ns, key))
        self._prune(mono)
        if not self.active and len(self._acts) > self.count:
            self.active = True
            self.first_out = self._acts[0][2]
            self.since_ns = now_ns
            return True
        return False

    def expire(self, mono: float) -> bool:
        """Forget activations older than the window; True when that ends the flood."""
        if not self._acts and not self.active:
            return False
        self._prune(mono)
        if self.active and len(self._acts) <= self.clear_count:
            self.active = False
            return True
        return False

    def finish(self) -> None:
        """Forget the ended flood's first-out and start time (after its end event)."""
        self.first_out = None
        self.since_ns = None

    # persistence: monotonic seconds do not survive a restart, wall-clock ns do -------------

    def dump(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "since_ns": self.since_ns,
            "first_out": None if self.first_out is None else list(self.first_out),
            "activations": [[ns, k.rule, k.subject] for _, ns, k in self._acts],
        }

    def load(self, data: dict[str, Any], mono: float, now_ns: int) -> None:
        self.active = bool(data.get("active"))
        self.since_ns = data.get("since_ns")
        first = data.get("first_out")
        self.first_out = AlarmKey(*first) if first else None
        self._acts.clear()
        for ns, rule, subject in data.get("activations", []):
            age = max(0.0, (now_ns - int(ns)) / 1e9)
            self._acts.append((mono - age, int(ns), AlarmKey(rule, subject)))


class RoomFirstOut:
    """First-out per room: the first alarm to become annunciated in a room since every alarm of
    that room was last out of the alarm list (normal, shelved, suppressed or out of service).
    Alarms without a room share the room `None`."""

    def __init__(self) -> None:
        self._open: dict[str | None, set[AlarmKey]] = {}
        self._room_of: dict[AlarmKey, str | None] = {}
        self.first: dict[str | None, AlarmKey] = {}

    def enter(self, key: AlarmKey, room: str | None) -> bool:
        """`key` became annunciated; True when it is its room's first-out."""
        if key in self._room_of:
            return False
        self._room_of[key] = room
        members = self._open.setdefault(room, set())
        members.add(key)
        if len(members) == 1:
            self.first[room] = key
            return True
        return False

    def leave(self, key: AlarmKey) -> None:
        if key not in self._room_of:
            return
        room = self._room_of.pop(key)
        members = self._open.get(room)
        if members is not None:
            members.discard(key)
            if not members:
                del self._open[room]
                self.first.pop(room, None)

    def is_first(self, key: AlarmKey, room: str | None) -> bool:
        return self.first.get(room) == key

    def dump(self) -> list[list[str | None]]:
        return [[room, k.rule, k.subject] for room, k in self.first.items()]

    def load(self, data: list[list[str | None]]) -> None:
        """Restore first-outs; call after `enter` of every restored annunciated alarm."""
        self.first = {}
        for room, rule, subject in data:
            if room in self._open:
                self.first[room] = AlarmKey(str(rule), str(subject))
