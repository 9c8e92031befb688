"""What a site's rules cannot see: warnings, not errors (the config runs as it is).

* **unconfigured bindings** — a rule bound to a subject but not evaluated, because a parameter
  its condition needs has no value (`Binding.missing`: a breaker rating nobody set; a per-
  chemistry default the pack leaves unset, e.g. no block-above-ambient limit for LFP);
* **coincidence gaps** — a rule that counts distinct sources (`at_least: {each: …}`,
  fire.smoke_coincidence) in a subject that has fewer than it needs: it can never fire (one
  detector in a room, or two smoke zones of one module not marked `field_device`);
* **rooms without fire detection** — a room of type battery, ups, energy_storage or
  data_center (batteries — a UPS room holds its batteries, as the packs' battery rules assume
  — or a data hall) in which no rule reads a point of quantity `smoke`.

`roomwarden check` prints them all (`check_warnings`, gateway.config.check_all); the running
gateway logs its unconfigured bindings once per config (`log_unconfigured`, called by the
rule engine) and reports them as the `rule_parameters` health item (gateway.ops.health): that
part is gateway.rules.unconfigured, re-exported here (a running gateway imports it alone).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gateway.config.loaded import LoadedConfig
from gateway.rules import model as m
from gateway.rules.binding import Binding, bind
from gateway.rules.compiler import PointInfo
from gateway.rules.config import ParameterOverrides
from gateway.rules.model import RulePack
from gateway.rules.sitepoints import SitePoints
from gateway.rules.unconfigured import Unconfigured, log_unconfigured, summary, unconfigured

__all__ = ["FIRE_ROOM_TYPES", "SMOKE", "Unconfigured", "check_warnings", "coincidence_gaps",
           "log_unconfigured", "response_gaps", "smoke_gaps", "summary", "unconfigured"]

FIRE_ROOM_TYPES = ("battery", "ups", "energy_storage", "data_center")
"""Room types `check` expects smoke detection in."""
SMOKE = "smoke"


def coincidence_gaps(packs: Iterable[RulePack], site: SitePoints,
                     overrides: ParameterOverrides) -> list[str]:
    """Subjects in which a rule counting distinct sources can never reach its count."""
    out = []
    for pack in packs:
        for rule in pack.rules:
            rule_id = pack.full_id(rule)
            cond = rule.condition
            if rule_id in overrides.disabled or not isinstance(cond, m.AtLeast) \
                    or cond.at_least.each is None:
                continue
            spec = cond.at_least
            wanted = getattr(spec.each, "quantity", None)
            groups: dict[str, list[PointInfo]] = {}
            for info in site.select(rule.select):
                if wanted is None or info.quantity in wanted:
                    subject = (info.id if rule.subject == "point" else info.device
                               if rule.subject == "device" else info.room)
                    groups.setdefault(subject, []).append(info)
            for subject, members in groups.items():
                first = members[0]
                params = overrides.resolve(
                    rule_id, rule.parameters, room=first.room, room_type=first.room_type,
                    device=None if rule.subject == "room" else first.device)
                count = params.get(spec.count[1:]) if isinstance(spec.count, str) \
                    else spec.count
                if not isinstance(count, int | float) or isinstance(count, bool):
                    continue  # unset: an unconfigured binding, or no number
                sources = sorted({i.source if spec.distinct == "device" else i.id
                                  for i in members})
                if len(sources) < max(1, round(count)):
                    out.append(_gap_text(rule_id, rule.subject, subject, round(count),
                                         spec.distinct, sources, members))
    return out


def _gap_text(rule_id: str, kind: str, subject: str, count: int, distinct: str,
              sources: list[str], members: list[PointInfo]) -> str:
    points = ", ".join(i.id for i in members)
    hint = ""
    if distinct == "device" and len(members) > len(sources):
        hint = ("; points of one device count once: mark independent detectors wired to "
                "one input module `field_device: true` (in its profile, or the device's "
                "`points:`)")
    return (f"rules: {rule_id} can never fire in {kind} {subject}: it needs {count} distinct "
            f"{'devices' if distinct == 'device' else 'points'} and there "
            f"{'is' if len(sources) == 1 else 'are'} {len(sources)} ({points}){hint}")


def smoke_gaps(loaded: LoadedConfig, packs: Iterable[RulePack], evaluated: Iterable[Binding],
               points: Iterable[PointInfo]) -> list[str]:
    """Rooms of the `FIRE_ROOM_TYPES` in which no evaluated smoke rule (one that selects
    quantity smoke by name: not a sensor-health rule over every point) reads a smoke point."""
    rules = {pack.full_id(rule) for pack in packs for rule in pack.rules
             if rule.select.quantity and SMOKE in rule.select.quantity}
    smoke = {info.id for info in points if info.quantity == SMOKE}
    watched = {b.room for b in evaluated
               if b.rule in rules and any(p in smoke for p in b.points)}
    return [f"room {room.id} ({room.type}): no smoke detection is bound — no rule reads a "
            f"point of quantity smoke there (fire.smoke_detector, fire.smoke_coincidence); "
            f"add smoke detectors to the room's devices"
            for room in loaded.config.rooms
            if room.type in FIRE_ROOM_TYPES and room.id not in watched]


def check_warnings(loaded: LoadedConfig, packs: Mapping[str, RulePack]) -> list[str]:
    """Everything above for `roomwarden check`: one line each."""
    overrides = ParameterOverrides.for_site(loaded, packs)
    site = SitePoints(loaded, 0.0)
    evaluated: list[Binding] = []
    left_out: list[Binding] = []
    for binding, _rule, node in bind(tuple(packs.values()), site, overrides):
        (left_out if node is None else evaluated).append(binding)
    return [*(item.text() for item in unconfigured(left_out, site.infos, overrides)),
            *coincidence_gaps(packs.values(), site, overrides),
            *smoke_gaps(loaded, packs.values(), evaluated, site.infos),
            *response_gaps(loaded, packs.values(), [*evaluated, *left_out])]


def response_gaps(loaded: LoadedConfig, packs: Iterable[RulePack],
                  bound: Iterable[Binding]) -> list[str]:
    """A rule that binds at this site with no response, from its pack or the site: its alarm
    cards would not say what to do (DESIGN principle 11; every shipped rule has one)."""
    site = loaded.config.rules.responses
    missing = {pack.full_id(rule) for pack in packs for rule in pack.rules
               if rule.response is None and pack.full_id(rule) not in site}
    return [f"rule {rule_id} has no response: its alarm cards will not say what to do; give "
            f"it `response:` in its pack or the site's words under `rules: responses:`"
            for rule_id in sorted(missing & {b.rule for b in bound})]
