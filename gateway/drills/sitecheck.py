"""A drill checked against the site it simulates, before it runs: every point, device, output,
coil and rule it names must exist there. Without this a typo in an expectation (`fan-batt` for
`fan-batt-3f`) reads as "never happened" — a MISS that blames the rules — and a typo in a step
acts on nothing."""

from __future__ import annotations

from collections.abc import Iterable

from gateway.config.suggest import closest
from gateway.config.yamlfile import YamlPath
from gateway.drills.model import Drill, ExpectAlarm, ExpectOutput, ExpectWrites
from gateway.rules.model import RulePack
from gateway.rules.responses import BUILTIN_RESPONSES

Problem = tuple[YamlPath, str]


def _unknown(kind: str, name: str, known: Iterable[str]) -> str:
    near = closest(name, known, cutoff=0.6)
    return f"no {kind} {name!r} on the drill's site" + (
        f"; did you mean {near!r}?" if near else "")


def site_problems(drill: Drill, *, points: set[str], coils: set[str], devices: set[str],
                  outputs: set[str], packs: Iterable[RulePack]) -> list[Problem]:
    """What `drill` names that its site does not have, with the YAML path of each."""
    rules = {pack.full_id(rule) for pack in packs for rule in pack.rules}
    rules.update(BUILTIN_RESPONSES)  # the gateway's own alarms (output supervision …)
    problems: list[Problem] = []
    for index, step in enumerate(drill.steps):
        here: YamlPath = ("steps", index)
        for point in step.set or {}:
            if point not in points:
                problems.append(((*here, "set", point), _unknown("point", point, points)))
        for number, point in enumerate(step.release or ()):
            if point not in points:
                problems.append(((*here, "release", number), _unknown("point", point, points)))
        if step.fault is not None and step.fault.device not in devices:
            problems.append(((*here, "fault", "device"),
                             _unknown("device", step.fault.device, devices)))
        if step.stick is not None and step.stick.point not in coils:
            problems.append(((*here, "stick", "point"),
                             _unknown("coil", step.stick.point, coils)))
        if isinstance(step.acknowledge, list):
            for number, rule in enumerate(step.acknowledge):
                if rule not in rules:
                    problems.append(((*here, "acknowledge", number),
                                     _unknown("rule", rule, rules)))
    for index, item in enumerate(drill.expect):
        here = ("expect", index)
        if isinstance(item, ExpectAlarm) and item.alarm not in rules:
            problems.append(((*here, "alarm"), _unknown("rule", item.alarm, rules)))
        elif isinstance(item, ExpectOutput) and item.output not in outputs:
            problems.append(((*here, "output"), _unknown("output", item.output, outputs)))
        elif isinstance(item, ExpectWrites) and item.writes not in coils:
            problems.append(((*here, "writes"), _unknown("coil", item.writes, coils)))
    return problems
