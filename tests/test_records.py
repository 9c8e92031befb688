"""gateway.records: every dataclass of the gateway is made by its `dataclass`, holds no method
compiled for it but `__init__`, and behaves as the standard library's dataclass of the same
class would. Each of the gateway's classes is compared with a twin that `dataclasses.dataclass`
makes of the same body (fields, bases, own methods) on the same field values; made-up classes
cover every flag, field option, the hash table and inheritance, on hypothesis' values."""

from __future__ import annotations

import dataclasses
import gc
import importlib
import math
import operator
import pickle
import pkgutil
import weakref
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gateway
from gateway.records import SHARED, dataclass, field, shared

ROOT = Path(__file__).resolve().parents[1]


@cache
def gateway_dataclasses() -> tuple[type, ...]:
    """The dataclasses of every gateway module (nested classes too), imported."""
    found: dict[type, None] = {}
    for info in pkgutil.walk_packages(gateway.__path__, "gateway."):
        if info.name.rpartition(".")[2] == "__main__":
            continue
        module = importlib.import_module(info.name)
        todo = list(vars(module).values())
        while todo:
            value = todo.pop()
            if (isinstance(value, type) and value.__module__ == module.__name__
                    and value not in found):
                found[value] = None
                todo.extend(vars(value).values())
    return tuple(c for c in found if "__dataclass_fields__" in vars(c))


def outcome(action: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """What `action(*args)` returned, or the type and text of what it raised."""
    try:
        return "returned", action(*args)
    except Exception as error:  # any outcome is compared
        return "raised", (type(error).__name__, str(error))


def _generated(function: object) -> bool:
    """Whether `function` (or what it wraps) was compiled by `dataclasses` from its text."""
    code = getattr(getattr(function, "__wrapped__", function), "__code__", None)
    return code is not None and code.co_filename == "<string>"


# --- the gateway's own classes -----------------------------------------------------------------


def test_every_gateway_dataclass_is_made_here() -> None:
    classes = gateway_dataclasses()
    assert len(classes) > 150  # a walk that found nothing would pass the rest
    assert Path(gateway.__file__).is_relative_to(ROOT)
    others = [c.__qualname__ for c in classes if "__records__" not in vars(c)]
    assert not others, f"made by dataclasses.dataclass, not gateway.records: {others}"


def test_no_method_but_init_is_compiled_per_class() -> None:
    compiled, inits = [], 0
    for cls in gateway_dataclasses():
        for name, value in vars(cls).items():
            if _generated(value):
                if name == "__init__":
                    inits += 1
                else:
                    compiled.append(f"{cls.__qualname__}.{name}")
        for name in vars(cls)["__records__"]:
            assert vars(cls)[name] is shared(name), (cls, name)
    assert not compiled
    assert inits > 150  # the constructors stay dataclasses' own


def twin(cls: type) -> type:
    """`dataclasses.dataclass` applied to `cls`'s body: its own annotations and methods, its
    fields' options (as new `field`s), its bases, the same flags."""
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    own = vars(cls)
    made = {"__dataclass_fields__", "__dataclass_params__", "__match_args__", "__init__",
            "__slots__", "__weakref__", "__dict__", "__records__"}
    body: dict[str, Any] = {}
    for name, value in own.items():
        if name in made or name.startswith("__record_") or (
                name in SHARED and value is shared(name)) or (
                name == "__hash__" and value is None and own.get("__eq__") is shared("__eq__")) or (
                name in ("__getstate__", "__setstate__")
                and getattr(value, "__module__", None) == "dataclasses"):
            continue
        body[name] = value
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in own.get("__annotations__", {}):
        f = fields.get(name)
        if f is None:  # a ClassVar or InitVar: its value, if any, is in the body
            continue
        options: dict[str, Any] = {"init": f.init, "repr": f.repr, "hash": f.hash,
                                   "compare": f.compare, "metadata": f.metadata,
                                   "kw_only": f.kw_only}
        if f.default is not dataclasses.MISSING:
            options["default"] = f.default
        if f.default_factory is not dataclasses.MISSING:
            options["default_factory"] = f.default_factory
        body[name] = dataclasses.field(**options)
    body["__qualname__"] = cls.__qualname__
    slots = "__slots__" in own
    shaped = type(cls)(cls.__name__, cls.__bases__, body)
    return dataclasses.dataclass(
        shaped, init=params.init, repr=params.repr, eq=params.eq,
        unsafe_hash=params.unsafe_hash, frozen=params.frozen, slots=slots,
        weakref_slot=slots and "__weakref__" in own["__slots__"])


NAN = math.nan


def field_values(count: int, variant: int) -> list[Any]:
    """Values for `count` fields: 0 the base (new objects at each call: equal, not the same),
    1 the last one differs, 2 the first one differs, 3 NaN (one object) in every field."""
    values: list[Any] = [(i, "v") for i in range(count)]
    if variant == 1 and count:
        values[-1] = "other"
    elif variant == 2 and count:
        values[0] = None
    elif variant == 3:
        values = [NAN] * count
    return values


def instance(cls: type, values: list[Any]) -> Any:
    """An instance of `cls` with `values` in its fields, made without its `__init__` (a
    section validates, other classes check their values; shared methods read fields only)."""
    made: Any = object.__new__(cls)
    for f, value in zip(dataclasses.fields(cls), values, strict=True):
        object.__setattr__(made, f.name, value)
    return made


def hashed(made: Any) -> object:
    """`hash(made)`, or "identity" for object's (twins' instances are other objects)."""
    kind: Any = type(made)
    return "identity" if kind.__hash__ is object.__hash__ else hash(made)


def shown(made: Any) -> str:
    """`repr(made)`, or "identity" for object's (it shows the address)."""
    kind: Any = type(made)
    return "identity" if kind.__repr__ is object.__repr__ else repr(made)


def answers(a: Any, b: Any) -> list[tuple[str, Any]]:
    """What instances `a` and `b` of one class answer: eq/ne both ways, hash, repr."""
    return [outcome(operator.eq, a, b), outcome(operator.ne, a, b), outcome(operator.eq, b, a),
            outcome(a.__eq__, object()), outcome(hashed, a), outcome(hashed, b),
            outcome(shown, a), outcome(shown, b)]


def remade(made: Any) -> tuple[Any, ...]:
    """The fields of `dataclasses.replace(made)` (which calls the constructor)."""
    return dataclasses.astuple(dataclasses.replace(made))


def alterations(made: Any, name: str) -> list[tuple[str, Any]]:
    """Assigning and deleting field `name` and a name that is no field."""
    return [outcome(setattr, made, name, 1), outcome(delattr, made, name),
            outcome(setattr, made, "not_a_field", 1), outcome(delattr, made, "not_a_field")]


def behaviour(cls: type) -> list[Any]:
    """What `cls` and its instances answer: its dataclass facts, eq/ne, hash, repr, assignment
    and deletion, asdict."""
    fields = dataclasses.fields(cls)
    count = len(fields)
    base = field_values(count, 0)
    seen: list[Any] = [repr(cls.__dataclass_params__),  # type: ignore[attr-defined]
                       cls.__match_args__, cls.__hash__ is None,  # type: ignore[attr-defined]
                       [(f.name, f.type, f.default, f.default_factory, f.init, f.repr, f.hash,
                         f.compare, f.kw_only) for f in fields]]
    one = instance(cls, base)
    seen += answers(one, instance(cls, base))  # the same objects in the fields
    for variant in range(4):
        seen += answers(one, instance(cls, field_values(count, variant)))
    seen += alterations(instance(cls, base), fields[0].name if fields else "x")
    seen.append(outcome(dataclasses.asdict, instance(cls, base)))
    return seen


@pytest.mark.parametrize("cls", gateway_dataclasses(), ids=lambda c: c.__qualname__)
def test_each_class_behaves_as_the_standard_librarys(cls: type) -> None:
    assert behaviour(cls) == behaviour(twin(cls))


def test_instances_pickle_back_with_their_fields() -> None:
    """What isolated_check's child sends back: every module-level class's instance (the
    fields' values here are plain) comes back equal field by field."""
    checked = 0
    for cls in gateway_dataclasses():
        if "." in cls.__qualname__:
            continue
        count = len(dataclasses.fields(cls))
        made = instance(cls, field_values(count, 0))
        back = pickle.loads(pickle.dumps(made))
        assert type(back) is cls
        assert [getattr(back, f.name) for f in dataclasses.fields(cls)] == field_values(count, 0)
        if cls.__dataclass_params__.eq:
            assert back == made
        checked += 1
    assert checked > 150


# --- made-up classes: every flag and field option ------------------------------------------


Maker = Callable[..., Any]


def body(kind: str, own_hash: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Annotations and namespace of a made-up class (fresh `field`s each time)."""
    shapes: dict[str, dict[str, Any]] = {
        "none": {},
        "one": {"a": (int, dataclasses.MISSING)},
        "two": {"a": (int, dataclasses.MISSING), "b": (str, "b")},
        "options": {"a": (int, dataclasses.MISSING),
                    "b": (int, field(default=0, compare=False)),
                    "c": (int, field(default=0, repr=False)),
                    "d": (int, field(default=0, hash=False)),
                    "e": (int, field(default=0, hash=True, compare=False)),
                    "f": (int, field(default=0, kw_only=True)),
                    "g": (ClassVar[int], 7)},
        "no_compare": {"a": (int, field(default=0, compare=False))},
    }
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {}
    for name, (kind_of, default) in shapes[kind].items():
        annotations[name] = kind_of
        if default is not dataclasses.MISSING:
            namespace[name] = default
    namespace["__annotations__"] = annotations
    if own_hash == "def":
        namespace["__hash__"] = lambda self: 42
    elif own_hash == "eq":
        namespace["__eq__"] = lambda self, other: self is other
    elif own_hash == "none":
        namespace["__hash__"] = None
    return annotations, namespace


def made_up(maker: Maker, kind: str, own_hash: str, flags: dict[str, Any],
            base: type = object) -> tuple[str, Any]:
    _, namespace = body(kind, own_hash)
    namespace["__qualname__"] = "Made"
    namespace["__module__"] = __name__
    return outcome(lambda: maker(type("Made", (base,), namespace), **flags))


FLAGS = [dict(frozen=frozen, slots=slots, eq=eq, repr=shown, unsafe_hash=unsafe)
         for frozen in (False, True) for slots in (False, True) for eq in (False, True)
         for shown in (False, True) for unsafe in (False, True)]


@pytest.mark.parametrize("kind", ["none", "one", "two", "options", "no_compare"])
@pytest.mark.parametrize("own_hash", ["", "def", "eq", "none"])
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: ",".join(k for k, v in f.items() if v))
def test_made_up_classes_behave_alike(kind: str, own_hash: str, flags: dict[str, Any]) -> None:
    """The hash table (16 cases by unsafe_hash, eq, frozen and a `__hash__` of the class's
    own), `repr=`, slots, and field options, against `dataclasses.dataclass`."""
    theirs = made_up(dataclasses.dataclass, kind, own_hash, flags)
    ours = made_up(dataclass, kind, own_hash, flags)
    assert theirs[0] == ours[0]
    if theirs[0] == "raised":
        assert theirs == ours
        return
    assert behaviour(ours[1]) == behaviour(theirs[1])


VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=3),
                   st.just(NAN), st.tuples(st.integers(), st.floats()), st.lists(st.integers()))


@settings(max_examples=200)
@given(st.sampled_from(FLAGS), st.sampled_from(["one", "two", "options"]),
       st.lists(VALUES, min_size=6, max_size=6), st.lists(VALUES, min_size=6, max_size=6),
       st.booleans())
def test_values_compare_hash_and_show_alike(flags: dict[str, Any], kind: str, first: list[Any],
                                            second: list[Any], subclass: bool) -> None:
    """Any field values, in a dataclass or in a plain subclass of one (its `__setattr__` goes
    to the base's when `type(self) is cls` fails)."""
    pair = []
    for maker in (dataclasses.dataclass, dataclass):
        made = made_up(maker, kind, "", flags)[1]
        if subclass:
            made = type("Sub", (made,), {"__module__": __name__, "__qualname__": "Sub"})
        count = len(dataclasses.fields(made))
        a, b = instance(made, first[:count]), instance(made, second[:count])
        pair.append([*answers(a, b), *answers(a, instance(made, first[:count])),
                     *alterations(a, "a"), outcome(dataclasses.astuple, a),
                     outcome(remade, b)])
    assert pair[0] == pair[1]


@pytest.mark.parametrize("maker", [dataclasses.dataclass, dataclass], ids=["stdlib", "records"])
def test_recursive_repr_and_inheritance(maker: Maker) -> None:
    """The recursion guard shows `...`; a subclass adds fields (its own methods over all of
    them) and a frozen base refuses a non-frozen subclass."""

    def made(name: str, bases: tuple[type, ...], fields: dict[str, Any], **flags: Any) -> Any:
        defaults = {k: v for k, (_, v) in fields.items() if v is not dataclasses.MISSING}
        return maker(type(name, bases, {"__annotations__": {k: t for k, (t, _) in fields.items()},
                                        "__module__": __name__, **defaults}), **flags)

    Node = made("Node", (), {"children": (list, dataclasses.MISSING)})
    node = Node([])
    node.children.append(node)
    assert repr(node) == "Node(children=[...])"
    Base = made("Base", (), {"a": (int, dataclasses.MISSING)}, frozen=True)
    Child = made("Child", (Base,), {"b": (int, 2)}, frozen=True, slots=True)
    assert repr(Child(1)) == "Child(a=1, b=2)"
    assert Child(1) == Child(1, 2) and Child(1) != Child(1, 3) and Child(1) != Base(1)
    assert hash(Child(1)) == hash((1, 2))
    assert dataclasses.replace(Child(1), b=5) == Child(1, 5)
    assert dataclasses.asdict(Child(1)) == {"a": 1, "b": 2}
    with pytest.raises(TypeError, match="cannot inherit non-frozen dataclass from a frozen"):
        maker(type("Loose", (Base,), {"__annotations__": {"c": int}}))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TheirFrozen:
    a: int
    b: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class OurFrozen:
    a: int
    b: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True, weakref_slot=True)
class OurWeak:
    a: int


@dataclass
class OurPlain:
    a: list[int] = field(default_factory=list)


def test_module_level_classes_pickle_and_copy() -> None:
    for made in (OurFrozen(a=1, b=("x",)), OurWeak(a=2), OurPlain([1])):
        assert pickle.loads(pickle.dumps(made)) == made
    assert pickle.loads(pickle.dumps(TheirFrozen(a=1))) == TheirFrozen(a=1)
    assert weakref.ref(OurWeak(a=1)) is not None
    assert repr(OurFrozen(a=1)) == "OurFrozen(a=1, b=())"
    assert OurFrozen.__match_args__ == TheirFrozen.__match_args__ == ()
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'a'"):
        OurFrozen(a=1).a = 2  # type: ignore[misc]


def _first_version_lives(maker: Maker) -> bool:
    cls = type("Gone", (), {"__annotations__": {"a": int}, "__module__": __name__})
    first = weakref.ref(cls)
    made = maker(cls, frozen=True, slots=True)
    del cls
    gc.collect()
    assert made(1).a == 1
    return first() is not None


def test_a_frozen_slotted_class_keeps_no_first_version() -> None:
    """dataclasses' `__setattr__`/`__delattr__` of a frozen slotted class keep the class
    `slots=True` replaced; the shared ones do not."""
    assert _first_version_lives(dataclasses.dataclass)
    assert not _first_version_lives(dataclass)


def test_a_checked_config_pickles_back() -> None:
    """What gateway.isolated_check's child sends: a site's LoadedConfig."""
    from gateway.config.loader import load_gateway_config

    loaded = load_gateway_config(ROOT / "tests" / "ops" / "site.yaml")
    back = pickle.loads(pickle.dumps(loaded))
    assert back == loaded
    assert repr(back) == repr(loaded)
    assert back.config.devices[0] == loaded.config.devices[0]
