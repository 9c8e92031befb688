"""The rule engine's latest evaluation of each binding, kept lean (issue 15).

An `Evaluation` takes 112 bytes, and its `ts` an int of 32 more; a site has thousands of
bindings, nearly all of them normal for years, and a normal binding's evaluation does not
change while it stays normal (gateway.rules.engine: its value and time are those of the
evaluation that made it normal). So `Latest` keeps, per binding by index, a kind and an item:

* `ACTIVE`: the item is its `Evaluation` (a round compares its value with the new one);
* `NORMAL`: the item is its value, and its time is in an array of int64 — the rest of its
  evaluation is the binding's own (rule, subject, room) and its rule's, so the engine makes it
  again, equal, when it is asked for (`current`), and keeps it from then on;
* `KEPT`: normal, the item its `Evaluation` (asked for once, or its time is no int64), so
  `current()` hands out the same object for as long as it does not change;
* `NONE`: not evaluated yet.

About 17 bytes a normal binding where its `Evaluation` took 144. The alarm manager keeps a
binding that was never active as a few columns too (gateway.alarms.known), so once the round
that made a normal binding's evaluation is over, nothing holds it.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable

from gateway.alarms.types import Evaluation
from gateway.field.sample import Value

NONE, NORMAL, ACTIVE, KEPT = 0, 1, 2, 3

Make = Callable[[int, Value, int], Evaluation]
"""Makes binding `index`'s normal evaluation with this value and time (the engine's)."""


class Latest:
    __slots__ = ("items", "kinds", "ts")

    def __init__(self, count: int) -> None:
        self.kinds = bytearray(count)
        self.items: list[Evaluation | Value] = [None] * count
        self.ts = array("q", bytes(8 * count))

    def keep(self, index: int, ev: Evaluation) -> None:
        """`ev` is binding `index`'s new evaluation."""
        if ev.active:
            self.items[index], self.kinds[index] = ev, ACTIVE
            return
        try:
            self.ts[index] = ev.ts
        except (OverflowError, TypeError):  # no int64: kept whole
            self.items[index], self.kinds[index] = ev, KEPT
            return
        self.items[index], self.kinds[index] = ev.value, NORMAL

    def current(self, make: Make) -> list[Evaluation]:
        """Every evaluated binding's latest evaluation, in binding order; a normal one's made
        now (by `make`) is kept."""
        items, kinds = self.items, self.kinds
        if NORMAL in kinds:
            ts = self.ts
            for index, kind in enumerate(kinds):
                if kind == NORMAL:
                    items[index] = make(index, items[index], ts[index])  # type: ignore[arg-type]
                    kinds[index] = KEPT
        return [item for item, kind in zip(items, kinds, strict=True)  # type: ignore[misc]
                if kind]

    def active(self) -> list[Evaluation]:
        """The latest evaluations that are active, in binding order."""
        return [item for item, kind in zip(self.items, self.kinds, strict=True)  # type: ignore[misc]
                if kind == ACTIVE]
