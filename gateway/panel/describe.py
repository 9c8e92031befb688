"""What the panel's alarm cards say beyond the alarm itself: the room's name, the device's
name and location, the unit, the limit crossed (or the condition in words) and what to do
(gateway.rules.responses)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from gateway.config.loaded import LoadedConfig
from gateway.config.site import Location
from gateway.records import dataclass
from gateway.rules import model as m
from gateway.rules.engine import Binding
from gateway.rules.model import RulePack
from gateway.rules.responses import Responses

MAX_TEXT = 160
"""A condition in words is cut here: a card has room for a line or two."""

_TESTS = {"above": ">", "at_or_above": "≥", "below": "<", "at_or_below": "≤"}
_SIGNALS = {"spread": "spread", "unbalance": "unbalance", "dew_point": "dew point",
            "mean": "mean", "outlier": "distance from the median"}


@dataclass(frozen=True, slots=True)
class Context:
    room_name: str | None = None
    device: str | None = None
    device_name: str | None = None
    location: str | None = None
    unit: str | None = None
    limit: str | None = None
    response: str | None = None
    flag_words: tuple[str, str] | None = None
    """What the alarm's true/false value means, off then on (`not answering`, `answering`),
    for a rule that tests one flag: a card reads "Cleared — now answering", not "now ON"."""


def _num(value: object, params: Mapping[str, object]) -> str:
    if isinstance(value, str) and value.startswith("$"):
        value = params.get(value[1:], value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _duration(seconds: object, params: Mapping[str, object]) -> str:
    if isinstance(seconds, str) and seconds.startswith("$"):
        seconds = params.get(seconds[1:], seconds)
    if not isinstance(seconds, int | float):
        return str(seconds)
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _signal(signal: m.Signal, unit: str | None) -> tuple[str, str | None]:
    """(words for the signal, its unit)."""
    if isinstance(signal, m.RateSignal):
        per = _duration(signal.rate.per, {})
        return "rate of change", f"{unit}/{per.removeprefix('1 ')}" if unit else None
    if isinstance(signal, m.LoadSignal):
        return "load", "%"
    if isinstance(signal, m.ExcessSignal):
        return "above " + "/".join(signal.excess_over), unit
    if signal == "unbalance":
        return "unbalance", "%"
    if signal == "dew_point":
        return "dew point", "°C"
    return _SIGNALS.get(signal, ""), unit


def _delay(cond: m.Compare, params: Mapping[str, object]) -> str:
    on_delay = cond.on_delay
    if isinstance(on_delay, str):
        on_delay = params.get(on_delay[1:], 0)  # type: ignore[assignment]
    return f" for {_duration(on_delay, params)}" if on_delay else ""


def _flag(quantity: str | None, on: bool, delay: str) -> str:
    if quantity == "device_online":
        return ("answering" if on else "not answering") + delay
    name = (quantity or "contact").replace("_", " ")
    return f"{name} {'on' if on else 'off'}{delay}"


def condition_text(cond: m.Condition, params: Mapping[str, object], unit: str | None,
                   quantity: str | None = None) -> str:
    """A rule's condition in words with its parameters filled in: `≥ 25 %LEL`, `no good
    reading for 5 min`, `2 of: smoke = True`."""
    if isinstance(cond, m.Compare):
        what, sig_unit = _signal(cond.signal, unit)
        suffix = f" {sig_unit}" if sig_unit else ""
        test = cond.test
        if test in _TESTS:
            text = f"{_TESTS[test]} {_num(getattr(cond, test), params)}{suffix}"
        elif test == "outside" and cond.outside is not None:
            low, high = (_num(v, params) for v in cond.outside)
            text = f"outside {low}–{high}{suffix}"
        elif test == "equals" and isinstance(cond.equals, bool):
            return _flag(quantity if cond.quantity is None else cond.quantity[0], cond.equals,
                         _delay(cond, params))
        elif test == "equals":
            text = f"= {_num(cond.equals, params)}"
        else:
            text = "one of " + ", ".join(_num(v, params) for v in cond.in_ or ())
        text += _delay(cond, params)
        return f"{what} {text}" if what else text
    if isinstance(cond, m.Stale):
        return f"no good reading for {_duration(cond.stale, params)}"
    if isinstance(cond, m.Flatline):
        return f"reading stuck for {_duration(cond.flatline.window, params)}"
    if isinstance(cond, m.Invalid):
        return f"invalid readings for {_duration(cond.invalid_for, params)}"
    if isinstance(cond, m.All):
        return " and ".join(condition_text(c, params, unit, quantity) for c in cond.all)
    if isinstance(cond, m.AnyOf):
        return " or ".join(condition_text(c, params, unit, quantity) for c in cond.any)
    if isinstance(cond, m.AtLeast):
        spec = cond.at_least
        count = _num(spec.count, params)
        if spec.each is not None:
            each = condition_text(spec.each, params, unit, quantity)
            return f"{count} {spec.distinct}s with {each}"
        inner = "; ".join(condition_text(c, params, unit, quantity) for c in spec.of or ())
        return f"{count} of: {inner}"
    return ""


def _location(loc: Location) -> str | None:
    parts = [f"{name} {value}" for name, value in
             (("row", loc.row), ("rack", loc.rack), ("position", loc.position)) if value]
    return ", ".join(parts) or None


class Describer:
    """Context of alarms by (rule, subject); built once per running config and rule engine.

    `bindings`: the bindings, or how to find one by (rule, subject) — the running gateway's
    `RuleEngine.binding`, asked once per alarm described (`_limits` keeps the answer): a copy
    of every binding held for the few alarms a panel shows was ~1.2 MiB at 2,000 points."""

    def __init__(self, loaded: LoadedConfig, packs: Sequence[RulePack],
                 bindings: Iterable[Binding] | Callable[[str, str], Binding | None],
                 units: Mapping[str, str | None]) -> None:
        cfg = loaded.config
        self._rooms = {r.id: r.name for r in cfg.rooms}
        self._devices = {d.id: d for d in cfg.devices}
        self._units = units
        self._rules = {pack.full_id(rule): rule for pack in packs for rule in pack.rules}
        if callable(bindings):
            self._binding = bindings
        else:
            table = {(b.rule, b.subject): b for b in bindings}
            self._binding = lambda rule, subject: table.get((rule, subject))
        self._limits: dict[tuple[str, str], str | None] = {}
        self._responses = Responses(packs, cfg.rules.responses)

    def context(self, rule: str, subject: str, room: str | None, title: str = "") -> Context:
        device = self._devices.get(subject.partition(".")[0])
        unit = self._units.get(subject)
        return Context(
            room_name=self._rooms.get(room) if room else None,
            device=device.id if device else None,
            device_name=device.name if device else None,
            location=_location(device.location) if device else None,
            unit=unit, limit=self._limit(rule, subject, unit),
            response=self._responses.response(rule, title), flag_words=self._flag_words(rule))

    def _flag_words(self, rule_id: str) -> tuple[str, str] | None:
        rule = self._rules.get(rule_id)
        cond = rule.condition if rule is not None else None
        if not isinstance(cond, m.Compare) or not isinstance(cond.equals, bool):
            return None
        quantities = cond.quantity or (rule.select.quantity if rule is not None else None)
        if not quantities or len(quantities) != 1:
            return None
        return _flag(quantities[0], False, ""), _flag(quantities[0], True, "")

    def _limit(self, rule_id: str, subject: str, unit: str | None) -> str | None:
        key = (rule_id, subject)
        if key not in self._limits:
            rule, binding = self._rules.get(rule_id), self._binding(rule_id, subject)
            text = None
            if rule is not None:
                params = binding.parameters if binding else dict(rule.parameters)
                quantities = rule.select.quantity
                text = condition_text(rule.condition, params, unit,
                                      quantities[0] if quantities else None) or None
            if text and len(text) > MAX_TEXT:
                text = text[:MAX_TEXT - 1] + "…"
            self._limits[key] = text
        return self._limits[key]
