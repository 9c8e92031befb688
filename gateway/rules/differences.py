"""Signals that compare members of a group with each other: a battery block against the room
air (`excess_over`), one block against the rest of its string (`outlier`). Pure, clock-free.

Both read only good members (bad ones are left out, as everywhere in the rules) and are
unknown (None) until they have what they compare: at least one block and one reference for
`excess_over`, at least three members for `outlier` (a median of two is no reference).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from gateway.rules.conditions import PointState
from gateway.rules.model import ExcessSignal as ExcessSpec

OUTLIER_MIN_MEMBERS = 3


class ExcessSignal:
    """The hottest non-reference member minus the mean of the reference members."""

    __slots__ = ("members", "references")

    def __init__(self, members: Sequence[PointState], references: Sequence[PointState]) -> None:
        self.members = tuple(members)
        self.references = tuple(references)

    def read(self, now: float) -> float | None:
        values = [n for n in (m.number() for m in self.members) if n is not None]
        ambient = [n for n in (r.number() for r in self.references) if n is not None]
        if not values or not ambient:
            return None
        return max(values) - sum(ambient) / len(ambient)


class OutlierSignal:
    """The largest |value − median| of the group's good members."""

    __slots__ = ("members",)

    def __init__(self, members: Sequence[PointState]) -> None:
        self.members = tuple(members)

    def read(self, now: float) -> float | None:
        values = [n for n in (m.number() for m in self.members) if n is not None]
        if len(values) < OUTLIER_MIN_MEMBERS:
            return None
        median = median_of(values)
        return max(abs(v - median) for v in values)


def median_of(values: list[float]) -> float:
    """`statistics.median`: the middle value, or the mean of the two middle ones (non-empty
    `values`). Here, not imported: `statistics` is 57 KiB of code a gateway otherwise never
    runs (issue 15)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def excess_signal(quantities: Sequence[str | None], states: Sequence[PointState],
                  reference: Collection[str]) -> ExcessSignal | None:
    """Split a group into members and references by quantity; None when either is empty."""
    members = [s for q, s in zip(quantities, states, strict=True) if q not in reference]
    references = [s for q, s in zip(quantities, states, strict=True) if q in reference]
    if not members or not references:
        return None
    return ExcessSignal(members, references)


def outlier_signal(states: Sequence[PointState]) -> OutlierSignal | None:
    return OutlierSignal(states) if len(states) >= OUTLIER_MIN_MEMBERS else None


def group_difference(spec: object, quantities: Sequence[str | None],
                     states: Sequence[PointState]) -> ExcessSignal | OutlierSignal | None:
    """The signal a rule's `signal:` names (`{excess_over: …}` or `outlier`), or None when the
    group cannot give it (the rule is then not bound to that subject)."""
    if isinstance(spec, ExcessSpec):
        return excess_signal(quantities, states, set(spec.excess_over))
    return outlier_signal(states)
