"""A site's unconfigured rule bindings, as people are told about them: a rule bound to a subject
but not evaluated, because a parameter its condition needs has no value (`Binding.missing`).

The running gateway's part of gateway.rules.coverage (which re-exports it, with the rest of
what `roomwarden check` warns about): the rule engine makes the report and logs it once per
config (`log_unconfigured`), and the `rule_parameters` health item says it (`summary`,
gateway.ops.health). Apart, so that a running gateway does not hold check's own (issue 15).
Pure but for that log line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from gateway.config.loaded import LoadedConfig
from gateway.records import dataclass
from gateway.rules.sitepoints import WeakMemo

if TYPE_CHECKING:
    from gateway.rules.binding import Binding
    from gateway.rules.compiler import PointInfo
    from gateway.rules.config import ParameterOverrides

log = logging.getLogger("roomwarden.rules")


@dataclass(frozen=True, slots=True)
class Unconfigured:
    """A binding left out for a missing parameter, as people are told about it."""

    rule: str
    subject: str
    scope: str
    """Where an override would set it: `device: <id>` or `room: <id>`."""
    missing: tuple[str, ...]
    chemistry: str | None
    """The battery chemistry whose pack defaults leave the parameter unset on purpose (not
    evaluated for it by design), else None: nobody set it."""

    @property
    def by_design(self) -> bool:
        return self.chemistry is not None

    def text(self) -> str:
        names = ", ".join(self.missing)
        setting = ", ".join(f"{n}: …" for n in self.missing)
        if self.chemistry is not None:
            return (f"rules: {self.rule} on {self.subject} is not evaluated: its pack leaves "
                    f"{names} unset for chemistry {self.chemistry} (set it under rules: "
                    f"parameters to evaluate it)")
        return (f"rules: {self.rule} on {self.subject} is not evaluated: parameter {names} "
                f"has no value; set it: rules: parameters: - {{rule: {self.rule}, "
                f"{self.scope}, set: {{{setting}}}}}")


def unconfigured(bindings: Iterable[Binding], points: Iterable[PointInfo],
                 overrides: ParameterOverrides) -> list[Unconfigured]:
    """The unconfigured `bindings` (`RuleEngine.unconfigured()`) for people."""
    infos = {info.id: info for info in points}
    out = []
    for binding in bindings:
        if binding.kind == "room":
            device, scope = None, f"room: {binding.subject}"
        else:
            device = infos[binding.points[0]].device if binding.points else binding.subject
            scope = f"device: {device}"
        chemistry = overrides.chemistry(device, binding.room)
        unset = overrides.chemistry_defaults.get(binding.rule, {}).get(chemistry or "", {})
        by_design = chemistry is not None and all(
            name in unset and unset[name] is None for name in binding.missing)
        out.append(Unconfigured(binding.rule, binding.subject, scope, binding.missing,
                                chemistry if by_design else None))
    return out


def summary(items: Sequence[Unconfigured], limit: int = 3) -> str:
    """`power.branch_overload on meter-ap1, meter-ap2 (rating_a); …` (the first `limit`
    rules, each with its subjects)."""
    by_rule: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for item in items:
        by_rule.setdefault((item.rule, item.missing), []).append(item.subject)
    parts = [f"{rule} on {', '.join(subjects)} ({', '.join(missing)})"
             for (rule, missing), subjects in list(by_rule.items())[:limit]]
    return "; ".join(parts) + (" …" if len(by_rule) > limit else "")


_logged: WeakMemo[LoadedConfig, list[bool]] = WeakMemo(lambda loaded: [False])


def log_unconfigured(loaded: LoadedConfig, items: Sequence[Unconfigured]) -> None:
    """One warning line per rule left unevaluated, once per config object (an engine built
    again on the same config — a restart of the rules, a rollback — does not repeat it)."""
    done = _logged(loaded)
    if done[0]:
        return
    done[0] = True
    by_rule: dict[tuple[str, tuple[str, ...], str | None], list[str]] = {}
    for item in items:
        by_rule.setdefault((item.rule, item.missing, item.chemistry), []).append(item.subject)
    for (rule, missing, chemistry), subjects in by_rule.items():
        log.warning("event=rule_not_evaluated rule=%s missing=%s subjects=%s reason=%s",
                    rule, ",".join(missing), ",".join(subjects),
                    f"unset_for_chemistry_{chemistry}" if chemistry else "parameter_not_set")
