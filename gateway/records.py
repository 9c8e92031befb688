"""`dataclass`: the standard library's `dataclasses.dataclass`, with one `__eq__`, `__hash__`,
`__repr__`, `__setattr__` and `__delattr__` shared by every class instead of a compiled copy in
each (issue 15). Every dataclass of the gateway is made here (tests/test_records.py checks).

`dataclasses` writes each class's methods as source text and compiles it (`exec`): the 150
dataclasses of a running gateway held 819 such functions (`__repr__` with its recursion
guard's wrapper, `__eq__`, `__hash__`, a frozen class's `__setattr__` and `__delattr__`: ~1 MB),
and their closures kept alive the first version of each frozen slotted class (117 classes),
which `slots=True` had replaced. Replaced after the start they freed nothing measurable (the
freed blocks stayed holes among the imports' objects: docs/performance.md). Here `dataclasses`
is asked for no `__eq__`, `__repr__` or `__hash__` (`eq=False, repr=False`: none is compiled)
and the class gets the shared ones, which read its fields through what is stored on it:
`__record_repr__` (the names), `__record_eq__` and `__record_hash__` (an `operator.attrgetter`
giving the tuple the generated method builds), `__record_frozen__`. A frozen class's
`__setattr__` and `__delattr__`, which `dataclasses` compiles whatever it is asked, are
replaced as soon as it has made them, so the imports that follow reuse that memory. Measured
(7 Dec, the unit's environment, interleaved runs, medians): a gateway's modules at rest
imported at 2,000 points 33.94 -> 32.81 MiB RSS (tracemalloc 17.20 -> 16.12 MiB); the booted
2,000-point process 50.14 -> 48.99 MiB (docs/performance.md, "Shared dataclass methods").
`__init__` stays compiled: hot paths construct instances. The shared `__eq__` and `__hash__`
take 1.4-2.3 times as long as compiled ones (+50 to +240 ns a call for 1-10 fields: the
attrgetter's generic attribute look-up), `__repr__` 2-2.7 times; none runs on a per-sample
path (counted under the rules-round and sample-path benches at 2,000 points: only at build).

The behaviour is the standard library's (Python 3.11), compared class by class in
tests/test_records.py:
- `__eq__`: `NotImplemented` unless `other.__class__ is self.__class__`, else the tuples of the
  fields with `compare=True` compared (`x is y or x == y` for each, in order);
- `__hash__`: dataclasses' table (unsafe_hash, eq, frozen, a `__hash__` of the class's own): a
  hash of the fields' tuple (`hash=`, else `compare=`), `None`, the class's own, or TypeError;
- `__repr__`: `Qualname(a=1, b='x')` of the fields with `repr=True`, `...` for an instance
  already being shown on the same thread (one guard for all classes: an object is shown by its
  own class's `__repr__`, so keys of `id` and thread never meet across classes);
- frozen: FrozenInstanceError with the same words when `type(self) is cls or name in fields`,
  else the next class's `__setattr__`/`__delattr__`. For a slotted class `cls` is, as in 3.11,
  the class before `slots=True` remade it (`_Remade` here), which no instance is of: a name
  that is not a field raises TypeError from `super()` there too;
- fields, `replace`, `asdict`, `__match_args__`, slots, pickling, pydantic's validation and
  `__dataclass_params__` (its `repr`, `eq` and `unsafe_hash` as given) are dataclasses' own.
The functions' names are the module's (`_eq`, not `Point.__eq__`), and `__records__` names
the methods a class got from here.

The keywords are those the gateway uses (no `order`, `init` or `match_args`); mypy reads the
decorator as a dataclass maker (`dataclass_transform`). ruff does not: its checks of a
dataclass's defaults (RUF008, RUF009) no longer see these classes (dataclasses itself still
refuses an unhashable default).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from dataclasses import field as field  # re-exported: a field of a class made here
from functools import partial
from operator import attrgetter
from threading import get_ident
from typing import Any, TypeVar, dataclass_transform, overload

_T = TypeVar("_T")

Key = Callable[[Any], tuple[Any, ...]]
"""An instance's fields as the tuple the generated `__eq__` or `__hash__` would build."""

SHARED = ("__repr__", "__eq__", "__hash__", "__setattr__", "__delattr__")
"""The methods a class may get from here (named in its `__records__`)."""


class _Remade:
    """The `cls` of a frozen slotted class's `__setattr__` and `__delattr__` in Python 3.11:
    the class before `slots=True` made a new one, of which no instance is (never
    instantiated)."""


def _no_field(obj: object) -> tuple[()]:
    return ()


def _one_field(name: str, obj: object) -> tuple[Any]:
    return (getattr(obj, name),)


def _key(names: tuple[str, ...]) -> Key:
    """The tuple of `names` of an instance: an `attrgetter` for two or more (a tuple already)."""
    if len(names) > 1:
        return attrgetter(*names)
    if names:
        return partial(_one_field, names[0])
    return _no_field


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is self.__class__:
        key = type(self).__record_eq__
        return key(self) == key(other)
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(type(self).__record_hash__(self))


_SHOWING: set[tuple[int, int]] = set()
"""(id, thread) of the instances whose `__repr__` runs: dataclasses' `_recursive_repr`."""


def _repr(self: Any) -> str:
    key = id(self), get_ident()
    if key in _SHOWING:
        return "..."
    _SHOWING.add(key)
    try:
        shown: str = (self.__class__.__qualname__ + "("
                      + ", ".join([f"{name}={getattr(self, name)!r}"
                                   for name in type(self).__record_repr__]) + ")")
        return shown
    finally:
        _SHOWING.discard(key)


def _setattr(self: Any, name: str, value: Any) -> None:
    owner, names = type(self).__record_frozen__
    if type(self) is owner or name in names:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
    super(owner, self).__setattr__(name, value)


def _delattr(self: Any, name: str) -> None:
    owner, names = type(self).__record_frozen__
    if type(self) is owner or name in names:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
    super(owner, self).__delattr__(name)


_SHARED_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "__repr__": _repr, "__eq__": _eq, "__hash__": _hash, "__setattr__": _setattr,
    "__delattr__": _delattr}
"""The one function of each method, for all classes."""


_KINDS: dict[tuple[str, ...], tuple[str, ...]] = {}
"""One `__records__` tuple for all classes that share the same methods."""


def shared(name: str) -> Callable[..., Any]:
    """The shared function of method `name` (one of `SHARED`)."""
    return _SHARED_FUNCTIONS[name]


def _hash_action(unsafe_hash: bool, eq: bool, frozen: bool, explicit: bool) -> str | None:
    """dataclasses' `_hash_action` table: "add", "none" (`__hash__ = None`), "raise", or None
    (the class keeps what it has: its own, or its base's)."""
    if unsafe_hash:
        return "raise" if explicit else "add"
    if not eq or explicit:
        return None
    return "add" if frozen else "none"


@overload
def dataclass(cls: type[_T], /) -> type[_T]: ...


@overload
def dataclass(*, repr: bool = True, eq: bool = True, unsafe_hash: bool = False,
              frozen: bool = False, kw_only: bool = False, slots: bool = False,
              weakref_slot: bool = False) -> Callable[[type[_T]], type[_T]]: ...


@dataclass_transform(field_specifiers=(field, dataclasses.Field))
def dataclass(cls: type[_T] | None = None, /, *, repr: bool = True, eq: bool = True,
              unsafe_hash: bool = False, frozen: bool = False, kw_only: bool = False,
              slots: bool = False, weakref_slot: bool = False
              ) -> type[_T] | Callable[[type[_T]], type[_T]]:
    """`dataclasses.dataclass` with the shared methods (see the module's docstring)."""

    def make(cls: type[_T]) -> type[_T]:
        return _make(cls, repr=repr, eq=eq, unsafe_hash=unsafe_hash, frozen=frozen,
                     kw_only=kw_only, slots=slots, weakref_slot=weakref_slot)

    return make if cls is None else make(cls)


def _make(cls: type[_T], *, repr: bool, eq: bool, unsafe_hash: bool, frozen: bool,
          kw_only: bool, slots: bool, weakref_slot: bool) -> type[_T]:
    own_hash = cls.__dict__.get("__hash__", dataclasses.MISSING)
    explicit_hash = not (own_hash is dataclasses.MISSING
                         or (own_hash is None and "__eq__" in cls.__dict__))
    made = dataclasses.dataclass(cls, repr=False, eq=False, frozen=frozen, kw_only=kw_only,
                                 slots=slots, weakref_slot=weakref_slot)
    action = _hash_action(unsafe_hash, eq, frozen, explicit_hash)
    if action == "raise":
        raise TypeError(f"Cannot overwrite attribute __hash__ in class {made.__name__}")
    params = made.__dataclass_params__  # type: ignore[attr-defined]
    params.repr, params.eq, params.unsafe_hash = repr, eq, unsafe_hash
    fields = dataclasses.fields(made)  # type: ignore[arg-type]
    names = tuple(f.name for f in fields)

    def named(chosen: tuple[str, ...]) -> tuple[str, ...]:
        return names if chosen == names else chosen  # one tuple where they are all

    compared = named(tuple(f.name for f in fields if f.compare))
    given: dict[str, Any] = {}
    if repr and "__repr__" not in made.__dict__:
        given.update(__repr__=_repr, __record_repr__=named(tuple(f.name for f in fields
                                                                 if f.repr)))
    if eq and "__eq__" not in made.__dict__:
        given.update(__eq__=_eq, __record_eq__=_key(compared))
    if frozen:  # dataclasses made them (it refuses a class with its own): replaced
        given.update(__setattr__=_setattr, __delattr__=_delattr,
                     __record_frozen__=(_Remade if slots else made, names))
    if action == "none":
        made.__hash__ = None  # type: ignore[assignment]
    elif action == "add":
        hashed = named(tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash)))
        given.update(__hash__=_hash, __record_hash__=(
            given["__record_eq__"] if "__record_eq__" in given and hashed == compared
            else _key(hashed)))
    kinds = tuple(name for name in SHARED if name in given)
    given["__records__"] = _KINDS.setdefault(kinds, kinds)
    for name, value in given.items():
        setattr(made, name, value)
    abc.update_abstractmethods(made)  # dataclasses' last step, with these methods now
    return made
