"""One object for equal parameters: what the leaves of one plan or the rate windows of one
rule's parameters have in common (their delays, limits, lengths) is kept once for them all —
a site has thousands of leaves and hundreds of windows, and a field each a leaf took 8 bytes a
leaf (gateway.rules.conditions `Delays`, gateway.rules.rate_window `Shape`).

`shared(make, *args)` is `make(*args)`, or the object an earlier call with equal arguments
made, while that object lives (a weak reference: nothing is kept for an engine that is gone).
Arguments are equal when they are the same object, or numbers, strings, booleans or None of
the same `repr` (0.0 is not -0.0, 1 is not 1.0). What `make` makes is never changed
afterwards (a leaf given other delays takes a copy of its own: `Delays.but`). Pure (the
arguments of each `make`'s latest call, and what it gave, are kept, so an engine's build
looks few keys up)."""

from __future__ import annotations

import copy
import operator
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")

_made: weakref.WeakValueDictionary[tuple[object, ...], Any] = weakref.WeakValueDictionary()
_kept: dict[tuple[object, ...], Any] = {}
"""The objects of kinds that take no weak reference (a class compiled with mypyc, whose native
classes have no `__weakref__`: gateway.rules.rate_window's `Shape` in a compiled build), kept
for the process's life — one per distinct parameters, at most `MAX_KEPT` (beyond: made anew,
not shared; equal, so nothing but memory depends on it)."""
MAX_KEPT = 4096
_recent: dict[Callable[..., Any], tuple[tuple[object, ...], Any]] = {}
"""Per `make`, the arguments of its latest call and what it gave (kept: one object a kind):
the leaves of one plan are made one after another with the very same objects (a plan's
floats, its test), found without a key."""


def shared(make: Callable[..., T], *args: object) -> T:
    recent = _recent.get(make)
    if recent is not None and len(args) == len(recent[0]) and all(
            map(operator.is_, args, recent[0])):
        return recent[1]  # type: ignore[no-any-return]
    key = (make, *[repr(a) if a is None or isinstance(a, int | float | str) else id(a)
                   for a in args])
    found: T | None = _made.get(key)
    if found is None:
        found = _kept.get(key)
    if found is None:
        found = make(*args)
        try:
            _made[key] = found
        except TypeError:  # no weak reference to it
            if len(_kept) < MAX_KEPT:
                _kept[key] = found
    _recent[make] = (args, found)
    return found


class Field(Generic[T]):
    """`obj.<name>` reads `obj.shape.<name>`: a field of what the object shares with its kind
    (`shared`), read as its own; set, the object takes a copy of its shape with the new value,
    its own (`but`)."""

    __slots__ = ("name",)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Field[T]: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...

    def __get__(self, obj: object, owner: type | None = None) -> Field[T] | T:
        return self if obj is None else getattr(obj.shape, self.name)  # type: ignore[attr-defined]

    def __set__(self, obj: object, value: T) -> None:
        obj.shape = but(obj.shape, **{self.name: value})  # type: ignore[attr-defined]


def but(shape: T, **changes: object) -> T:
    """A copy of `shape` with `changes`, shared with nobody."""
    copied = copy.copy(shape)
    for name, value in changes.items():
        setattr(copied, name, value)
    return copied
