"""Holding a config's own trouble alarms while it is on trial (its health check).

A config being tried out must not cost the operator anything if it is rolled back: while the
applier health-checks it, the alarms that only say the *candidate* cannot reach its devices —
sensor and device health (the `sensor_health` pack, any rule marked `trouble: true`, such as
`explosion.gas_detector_failure`, and any rule that selects nothing but `device_online` /
`detector_fault`) and the alarm outputs' own trouble (every `actions.*` rule:
`actions.output_failure`, a relay that does not respond, and the output feedback alarms) —
are **held**: they do not reach the
alarm manager, so they are not shown on the panel, not journalled, not sent uplink and drive
no output. Alarms on measured values (fire, gas, temperature, power …) are never held, and an
alarm that was already raised before the trial carries on untouched (its evaluations pass).

On **commit** the held conditions are handed to the alarm manager in the order they were
seen, each at the time it was first seen (the alarm's activation time is the real one), and an
alarm that chattered and then stayed clear for the hold time ends chattering at that time; on
**rollback** they are dropped — the config that runs again judges its own devices afresh.

Bounded: one entry per (rule, subject) of the candidate, at most `MAX_CHANGES` condition
changes each (the first and the latest are always kept).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from gateway.alarms.events import AlarmCommandError
from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.alarms.types import Evaluation
from gateway.clock import Clock
from gateway.records import dataclass, field
from gateway.rules.model import DEVICE_ONLINE, RulePack

if TYPE_CHECKING:
    from gateway.alarms.events import AlarmEvent
    from gateway.alarms.manager import AlarmManager

log = logging.getLogger("roomwarden.flashing")

HELD_PACKS = frozenset({"sensor_health"})
"""Rule packs whose alarms are held whole while a config is on trial."""
OUTPUT_TROUBLE_PREFIX = "actions."
"""Alarms about the outputs themselves (gateway.safety, gateway.actions): held."""
TROUBLE_QUANTITIES = frozenset({DEVICE_ONLINE, "detector_fault"})
"""A rule of another pack is held when it selects only these (a device's own trouble)."""
MAX_CHANGES = 8
"""Condition changes kept per held alarm."""


def held_rules(packs: Iterable[RulePack]) -> frozenset[str]:
    """Rule ids whose new alarms wait while a config is on trial."""
    ids: set[str] = set()
    for pack in packs:
        for rule in pack.rules:
            quantities = set(rule.select.quantity or ())
            if pack.pack in HELD_PACKS or rule.trouble or (
                    quantities and quantities <= TROUBLE_QUANTITIES):
                ids.add(pack.full_id(rule))
    return frozenset(ids)


@dataclass(slots=True)
class _Held:
    changes: list[tuple[int, float, Evaluation]] = field(default_factory=list)
    """(wall-clock ns, monotonic s, evaluation) at each change of the condition, oldest first."""

    @property
    def active(self) -> bool:
        return self.changes[-1][2].active

    def see(self, ev: Evaluation, now_ns: int, mono: float) -> None:
        if ev.active == self.active:
            self.changes[-1] = (*self.changes[-1][:2], ev)  # keep the newest value
            return
        if len(self.changes) >= MAX_CHANGES:
            del self.changes[1:3]  # keep the first activation and an even count of changes
        self.changes.append((now_ns, mono, ev))


class TrialHold:
    """The held alarms of one config trial (see the module docstring)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._held: dict[AlarmKey, _Held] = {}
        self._rules: frozenset[str] = frozenset()
        self._packs: Sequence[RulePack] | None = None

    def __len__(self) -> int:
        return len(self._held)

    def held(self) -> list[AlarmKey]:
        """The alarms held now (their condition active at its latest evaluation)."""
        return sorted(k for k, h in self._held.items() if h.active)

    def admit(self, evaluations: Sequence[Evaluation], alarms: AlarmManager,
              packs: Sequence[RulePack]) -> list[Evaluation]:
        """The evaluations the alarm manager may see now; the rest are held."""
        if packs is not self._packs:  # the candidate's packs (or the rollback's)
            self._packs, self._rules = packs, held_rules(packs)
        rules, held = self._rules, self._held
        passed: list[Evaluation] = []
        now_ns: int | None = None
        mono = 0.0
        for ev in evaluations:
            if ev.rule not in rules and not ev.rule.startswith(OUTPUT_TROUBLE_PREFIX):
                passed.append(ev)
                continue
            key = AlarmKey(ev.rule, ev.subject)
            entry = held.get(key)
            if entry is None:
                if not ev.active or _raised(alarms, key):
                    passed.append(ev)  # nothing new, or an alarm raised before the trial
                    continue
                entry = held[key] = _Held()
            if now_ns is None:
                now_ns, mono = self.clock.now_ns(), self.clock.monotonic()
            if not entry.changes:
                entry.changes.append((now_ns, mono, ev))
                log.info("event=alarm_held_during_trial rule=%s subject=%s value=%r",
                         ev.rule, ev.subject, ev.value)
            else:
                entry.see(ev, now_ns, mono)
        return passed

    def release(self, alarms: AlarmManager) -> list[AlarmEvent]:
        """The config was committed: raise what was held, each change at its own time."""
        changes = sorted((c for h in self._held.values() for c in h.changes),
                         key=lambda c: (c[0], c[1]))
        self._held.clear()
        events: list[AlarmEvent] = []
        group: list[Evaluation] = []
        at: tuple[int, float] | None = None
        for ns, mono, ev in changes:
            if at is not None and (ns, mono) != at:
                events.extend(alarms.observe(group, at=at))
                events.extend(releases_before(alarms, mono))
                group = []
            at = (ns, mono)
            group.append(ev)
        if group and at is not None:
            events.extend(alarms.observe(group, at=at))
            events.extend(releases_before(alarms, self.clock.monotonic()))
        return events

    def discard(self) -> list[AlarmKey]:
        """The config was rolled back: forget what was held; returns the keys dropped."""
        keys = sorted(self._held)
        self._held.clear()
        return keys


def releases_before(alarms: AlarmManager, until: float) -> list[AlarmEvent]:
    """The chatter releases a running manager would have made before `until` (monotonic s),
    each at its own time: a held alarm that chattered during the trial and then stayed clear
    for the hold time ended chattering then, not when the trial was committed."""
    events: list[AlarmEvent] = []
    while (due := alarms.next_chatter_release()) is not None and due[1] < until:
        events.extend(alarms.tick(at=due))
    return events


def _raised(alarms: AlarmManager, key: AlarmKey) -> bool:
    """The alarm is known and not normal (raised before the trial): it is not held."""
    try:
        return alarms.get(key).state is not AlarmState.NORMAL
    except AlarmCommandError:  # unknown: never raised
        return False
