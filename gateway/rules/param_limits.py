"""What the rule overrides of a site may not set although each value is of the right kind:
parameters a rule's condition cannot be built with (gateway.rules.compiler raises on them
when the engine binds the rule, at the gateway's start). `roomwarden check` refuses them
(gateway.rules.config.check_rules), so a config that passes it starts.

An audit found `environment.temperature_recommended: {low: 50, high: 10}`, `power.mains_voltage:
{high_v: 0}` (under its default `low_v: 198`) and a rate `window: 0s` passing the check — or
tracebacking in its warnings pass — and crashing the gateway's start.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from gateway.config.errors import YamlPath
from gateway.config.loaded import LoadedConfig
from gateway.rules.model import Compare, Condition, RateSignal, Rule, iter_conditions
from gateway.rules.section import ParamValue, RulesSection


class Resolver(Protocol):
    """A rule's parameters for one subject (gateway.rules.config.ParameterOverrides)."""

    def resolve(self, rule_id: str, defaults: Mapping[str, ParamValue], *,
                device: str | None, room: str | None, room_type: str | None,
                ) -> dict[str, ParamValue]: ...


_Scope = tuple[str | None, str | None, str | None]
"""(device, room, room type) a rule's parameters are resolved for."""


def unbuildable(section: RulesSection, rules: Mapping[str, Rule], loaded: LoadedConfig,
                overrides: Resolver) -> Iterator[tuple[YamlPath, str]]:
    """(path under `rules`, reason) for each override that gives a rule parameters its
    condition cannot be built with — an `outside` band whose low is above its high, a rate
    window of 0 s — at any scope of this site: each value may be right on its own and the
    pair wrong (a site's `low: 30` under the default `high: 27`, a room type's `high: 20`
    under the site's `low: 25`). The engine raises on them when it binds the rule (the
    gateway's start: a crash, not a refused config), so they are refused here; the override
    named is the most specific one that set a value of the pair."""
    room_types = {r.id: r.type for r in loaded.config.rooms}
    scopes: list[_Scope] = [(None, None, None)]
    scopes += [(None, r.id, r.type) for r in loaded.config.rooms]
    scopes += [(d.id, d.room, room_types.get(d.room)) for d in loaded.config.devices]
    scopes += [(None, None, e.room_type) for e in section.parameters if e.room_type]
    numbered = sorted(enumerate(section.parameters), key=lambda item: item[1].rank)
    blamed: set[YamlPath] = set()
    for rule_id in dict.fromkeys(e.rule for e in section.parameters):
        rule = rules.get(rule_id)
        if rule is None:
            continue
        for device, room, room_type in scopes:
            params = overrides.resolve(rule_id, rule.parameters, device=device, room=room,
                                       room_type=room_type)
            for names, what, why in _build_problems(rule.condition, params):
                applied = [(i, e) for i, e in numbered if e.rule == rule_id
                           and e.device in (None, device) and e.room in (None, room)
                           and e.room_type in (None, room_type)
                           and any(n in e.set for n in names)]
                if not applied:
                    continue  # the rule's own defaults: the pack's to get right
                index, entry = applied[-1]
                key = next(n for n in names if n in entry.set)
                path: YamlPath = ("parameters", index, "set", key)
                if path in blamed:
                    continue
                blamed.add(path)
                where = (f" for device {device}" if device is not None else
                         f" for room {room}" if room is not None else
                         f" for rooms of type {room_type}" if room_type is not None else "")
                yield path, f"{rule_id}'s {what}{where}: {why}"


def _build_problems(condition: Condition, params: Mapping[str, ParamValue]
                    ) -> Iterator[tuple[tuple[str, ...], str, str]]:
    """(parameters involved, what is wrong, why) for each limit of `condition` that the
    compiled tests refuse with these resolved parameters (gateway.rules.hysteresis.Outside:
    low above high; gateway.rules.rate_window.Shape: a window of 0 s). A parameter with no
    value is left alone: a binding missing one is not compiled."""
    def value(written: float | str) -> tuple[float | None, tuple[str, ...], str]:
        if isinstance(written, str):
            name = written[1:]
            got = params.get(name)
            number = None if got is None or isinstance(got, bool) else float(got)
            return number, (name,), f"{name} {number:g}" if number is not None else name
        return written, (), f"{written:g}"

    for node in iter_conditions(condition):
        if not isinstance(node, Compare):
            continue
        if node.outside is not None:
            low, low_names, low_text = value(node.outside[0])
            high, high_names, high_text = value(node.outside[1])
            if low is not None and high is not None and low > high:
                yield ((*low_names, *high_names), f"{low_text} is above {high_text}",
                       "the normal band between them would be empty (low must not be above "
                       "high)")
        if isinstance(node.signal, RateSignal):
            window, names, _text = value(node.signal.rate.window)
            if window is not None and window <= 0:
                yield (names, f"{names[0] if names else 'window'} is 0s",
                       "a rate window must be longer than 0s")
