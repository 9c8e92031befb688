"""Every alarm the manager knows, by (rule, subject): its `AlarmRecord`, or, for a binding that
has only ever been evaluated inactive and never named (most of them: 6,478 at a 2,000-point
site, nearly all quiet for years), its latest evaluation kept as a few columns (issue 15).

A quiet binding is normal, with no history and nothing to journal (gateway.alarms.ledger). It is
kept per rule, in order of subject: its subject, its latest evaluation's value and time (an
int64 in an array), its *head* — severity, title, room, actions, latching: one tuple for all
the bindings that share them — and its place. Its `Evaluation` is made again, equal, when one
is needed (`quiet_evaluation`: a command or `get` names it, it becomes a record). About 50 bytes
a binding (41 of them the columns), where a key tuple, a dict entry and the `Evaluation` with
its time took about 240 (the rule engine keeps no `Evaluation` of a normal binding either:
gateway.rules.latest). A record's place is an entry in a dict: records are few. An evaluation
that does not fit the columns (a time that is no int64, `active` not False, an unhashable
field) is kept whole in its head's place.

Places: every key takes one, in the order it is first met (a record restored from the
journal: in the journal's order, before any evaluation); a quiet binding that becomes a record
keeps its place. `records` (in a dict kept in order of place) and the iteration follow it: the
order the alarms were first evaluated in, quiet or not. Pure: no clock, no I/O.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterator

from gateway.alarms.lifecycle import AlarmRecord
from gateway.alarms.types import Evaluation, Severity, evaluation
from gateway.field.sample import Value

Key = tuple[str, str]
Head = tuple[Severity, str, str | None, tuple[str, ...], bool]
"""What an evaluation has besides its rule, subject, `active`, value and time."""

HEADS_KEPT = 4096
"""Distinct heads shared (one per rule and room, about); then the table restarts."""

_INT64 = (-(2**63), 2**63)


class _Quiet:
    """One rule's quiet bindings: columns in order of subject."""

    __slots__ = ("heads", "places", "subjects", "ts", "values")

    def __init__(self) -> None:
        self.subjects: list[str] = []
        self.values: list[Value] = []
        self.ts = array("q")
        self.heads: list[Head | Evaluation] = []
        """A binding's head, or its whole evaluation when it does not fit the columns."""
        self.places = array("q")

    def find(self, subject: object) -> int:
        """The position of `subject`'s binding, or -1."""
        if not isinstance(subject, str):
            return -1
        subjects = self.subjects
        at = bisect_left(subjects, subject)
        return at if at < len(subjects) and subjects[at] == subject else -1

    def remove(self, at: int) -> None:
        for column in (self.subjects, self.values, self.ts, self.heads, self.places):
            del column[at]


class KnownAlarms:
    def __init__(self) -> None:
        self.records: dict[Key, AlarmRecord] = {}
        """The alarms that are not quiet, in order of place."""
        self._places: dict[Key, int] = {}
        """Each record's place."""
        self._top = -1
        """The greatest place in `records`."""
        self._quiet: dict[str, _Quiet] = {}
        self._next = 0
        self._heads: dict[Head, Head] = {}

    def __contains__(self, key: Key) -> bool:
        if key in self.records:  # (an unhashable key raises here, as a dict's look-up)
            return True
        rule, subject = key
        quiet = self._quiet.get(rule)
        return quiet is not None and quiet.find(subject) >= 0

    def keep_quiet(self, ev: Evaluation) -> bool:
        """`ev` (inactive) is the latest evaluation of a binding that is no record: quiet,
        in its place (a new binding takes the next). False: not kept, a subject that is no
        text (it takes a record)."""
        subject = ev.subject
        if not isinstance(subject, str):
            return False
        quiet = self._quiet.get(ev.rule)
        if quiet is None:
            quiet = self._quiet[ev.rule] = _Quiet()
        subjects = quiet.subjects
        at = bisect_left(subjects, subject)
        value, ts, head = self._columns(ev)
        if at == len(subjects) or subjects[at] != subject:
            subjects.insert(at, subject)
            quiet.values.insert(at, value)
            quiet.ts.insert(at, ts)
            quiet.heads.insert(at, head)
            quiet.places.insert(at, self._next)
            self._next += 1
        else:
            quiet.values[at], quiet.ts[at], quiet.heads[at] = value, ts, head
        return True

    def update_quiet(self, ev: Evaluation) -> bool:
        """`ev` (inactive) is the latest of a quiet binding: kept, True; not quiet: False."""
        quiet = self._quiet.get(ev.rule)
        at = -1 if quiet is None else quiet.find(ev.subject)
        if quiet is None or at < 0:
            return False
        quiet.values[at], quiet.ts[at], quiet.heads[at] = self._columns(ev)
        return True

    def _columns(self, ev: Evaluation) -> tuple[Value, int, Head | Evaluation]:
        """What the columns keep of `ev`: its value, time and shared head, or (None, 0, ev)."""
        ts = ev.ts
        if ev.active is False and type(ts) is int and _INT64[0] <= ts < _INT64[1]:
            head = (ev.severity, ev.title, ev.room, ev.actions, ev.latching)
            heads = self._heads
            try:
                shared = heads.get(head)
            except TypeError:  # an unhashable field: kept whole
                return None, 0, ev
            if shared is None:
                if len(heads) >= HEADS_KEPT:
                    heads.clear()
                shared = heads[head] = head
            return ev.value, ts, shared
        return None, 0, ev

    def quiet_evaluation(self, key: Key) -> Evaluation:
        """The latest evaluation of the quiet binding `key` (KeyError: none)."""
        rule, subject = key
        quiet = self._quiet.get(rule)
        at = -1 if quiet is None else quiet.find(subject)
        if quiet is None or at < 0:
            raise KeyError(key)
        return _made(rule, quiet, at)

    def add(self, key: Key, rec: AlarmRecord) -> None:
        """`rec` is the record of `key` from now on: in the place of `key`'s quiet binding,
        if it was one, else in the next place."""
        records = self.records
        if key in records:  # (a record replaced: in its place)
            records[key] = rec
            return
        place = self._drop_quiet(key)
        if place is None:
            place, self._next = self._next, self._next + 1
        self._places[key] = place
        if place > self._top:
            self._top = place
            records[key] = rec
            return
        ordered = sorted([*records.items(), (key, rec)], key=lambda kv: self._places[kv[0]])
        records.clear()
        records.update(ordered)

    def pop(self, key: Key) -> AlarmRecord | None:
        """Forget `key` (KeyError: unknown); its record, None for a quiet one."""
        rec = self.records.pop(key, None)
        if rec is not None:
            del self._places[key]
            return rec
        if self._drop_quiet(key) is None:
            raise KeyError(key)
        return None

    def _drop_quiet(self, key: Key) -> int | None:
        """Remove `key`'s quiet binding; its place (None: none)."""
        rule, subject = key
        quiet = self._quiet.get(rule)
        at = -1 if quiet is None else quiet.find(subject)
        if quiet is None or at < 0:
            return None
        place = quiet.places[at]
        quiet.remove(at)
        if not quiet.subjects:
            del self._quiet[rule]
        return place

    def __iter__(self) -> Iterator[Key]:
        """Every known key, quiet or not, in order of place."""
        placed = [(self._places[key], key) for key in self.records]
        for rule, quiet in self._quiet.items():
            placed.extend((place, (rule, subject))
                          for place, subject in zip(quiet.places, quiet.subjects, strict=True))
        placed.sort(key=lambda item: item[0])
        return (key for _, key in placed)

    def bindings(self) -> Iterator[tuple[str, str, str | None]]:
        """(rule, subject, room) of every known alarm, records first, then quiet ones."""
        for key, rec in self.records.items():
            yield key[0], key[1], rec.ev.room
        for rule, quiet in self._quiet.items():
            for subject, head in zip(quiet.subjects, quiet.heads, strict=True):
                yield rule, subject, head.room if isinstance(head, Evaluation) else head[2]


def _made(rule: str, quiet: _Quiet, at: int) -> Evaluation:
    head = quiet.heads[at]
    if isinstance(head, Evaluation):
        return head
    severity, title, room, actions, latching = head
    return evaluation(rule, quiet.subjects[at], False, quiet.values[at], severity,
                      quiet.ts[at], title, room, actions, latching)
