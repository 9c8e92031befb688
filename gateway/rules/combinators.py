"""The condition trees' combinators at run time (re-exported by gateway.rules.nodes, which says
what unknown means for them): all, any, at least n of the children, each child's held output
counted (a node's `eval(now)` returns whether it is active and leaves the deciding value in
`node.value`). Pure and clock-free."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from gateway.field.sample import Value

if TYPE_CHECKING:
    from gateway.rules.nodes import Node


class AllNode:
    __slots__ = ("children", "value")

    def __init__(self, children: Sequence[Node]) -> None:
        self.children = tuple(children)
        self.value: Value = None

    def eval(self, now: float) -> bool:
        result = True
        decider: Node | None = None
        for child in self.children:  # evaluate all: every child's timers must advance
            if not child.eval(now) and result:
                result = False
                decider = child
        self.value = (decider or self.children[0]).value
        return result


class AnyNode:
    __slots__ = ("children", "value")

    def __init__(self, children: Sequence[Node]) -> None:
        self.children = tuple(children)
        self.value: Value = None

    def eval(self, now: float) -> bool:
        result = False
        decider: Node | None = None
        for child in self.children:
            if child.eval(now) and not result:
                result = True
                decider = child
        self.value = (decider or self.children[0]).value
        return result


class AtLeastNode:
    """At least `count` children active; with `groups`, children of one group (one device)
    count once, so two flags of one detector are not two independent detectors."""

    __slots__ = ("children", "count", "groups", "value")

    def __init__(self, children: Sequence[Node], count: int,
                 groups: Sequence[str] | None = None) -> None:
        self.children = tuple(children)
        self.count = count
        self.groups = tuple(groups) if groups is not None else None
        self.value: Value = 0

    def eval(self, now: float) -> bool:
        groups = self.groups
        if groups is None:
            active = sum(1 for child in self.children if child.eval(now))
        else:
            seen = {group for child, group in zip(self.children, groups, strict=True)
                    if child.eval(now)}
            active = len(seen)
        self.value = active
        return active >= self.count
