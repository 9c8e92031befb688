"""Binding rules to a site's subjects: for each rule, its subjects (gateway.rules.sitepoints),
each subject's resolved parameters, and its compiled condition tree (gateway.rules.compiler).

Built at every gateway start and config apply, so what does not depend on the subject is done
once: a rule's parameter references once per rule object, its compiled plan once per rule and
parameter set (`RuleFacts`, kept while the rule object lives, so engines built on the same
packs share them), its subjects once per config (`SitePoints.subjects`), its parameters once
per (device, room) within a rule — one parameter dict for all the subjects that share it
(read-only: `Binding.parameters` is shared), one tuple of point ids per set of points. Pure.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

from gateway.records import dataclass, field
from gateway.rules import model as m
from gateway.rules.compiler import Plan, Unbindable, prepare
from gateway.rules.config import ParameterOverrides
from gateway.rules.model import RulePack, condition_refs
from gateway.rules.nodes import Node
from gateway.rules.section import ParamValue
from gateway.rules.sitepoints import SitePoints, WeakMemo

SubjectKind = Literal["point", "device", "room"]

PLANS_PER_RULE = 256
"""Compiled plans kept per rule (one per distinct parameter set); beyond, the cache restarts."""


@dataclass(frozen=True, slots=True)
class Binding:
    """One rule bound to one subject."""

    rule: str
    subject: str
    kind: SubjectKind
    room: str | None
    points: tuple[str, ...]
    parameters: dict[str, ParamValue] = field(default_factory=dict)
    """Read-only: bindings of a rule with equal parameters share one dict."""
    missing: tuple[str, ...] = ()
    """Parameters the condition needs that have no value: the binding is not evaluated."""


class _Draft:
    """A `Binding`'s slots without its frozen `__setattr__`: made, it becomes a `Binding`
    (as gateway.alarms.types.evaluation; about four times faster than the dataclass's own
    `__init__`, and a site has thousands)."""

    __slots__ = Binding.__slots__

    def __init__(self, rule: str, subject: str, kind: SubjectKind, room: str | None,
                 points: tuple[str, ...], parameters: dict[str, ParamValue],
                 missing: tuple[str, ...]) -> None:
        self.rule = rule
        self.subject = subject
        self.kind = kind
        self.room = room
        self.points = points
        self.parameters = parameters
        self.missing = missing
        self.__class__ = Binding  # type: ignore[assignment]  # same slots: allowed


class Shared:
    """What the bindings of one rule with one parameter set have in common (a `Binding`'s
    fields but the subject's, and the rule itself): one object for them all."""

    __slots__ = ("kind", "model", "parameters", "rule")

    def __init__(self, binding: Binding, model: m.Rule) -> None:
        self.rule = binding.rule
        self.kind = binding.kind
        self.parameters = binding.parameters
        self.model = model
        """The rule (severity, title, actions, latching: read when an evaluation is made)."""


def make_binding(rule: str, subject: str, kind: SubjectKind, room: str | None,
                 points: tuple[str, ...], parameters: dict[str, ParamValue],
                 missing: tuple[str, ...]) -> Binding:
    """`Binding(rule, subject, kind, room, points, parameters, missing)`, made faster."""
    draft = _Draft(rule, subject, kind, room, points, parameters, missing)
    return draft  # type: ignore[return-value]  # its class is Binding now


class RuleFacts:
    """What depends on the rule alone: the parameters its condition refers to, and its
    compiled plans by parameter set."""

    def __init__(self, rule: m.Rule) -> None:
        self.refs = tuple(sorted(condition_refs(rule.condition)))
        self.condition = rule.condition
        self._plans: dict[tuple[tuple[str, ParamValue], ...], Plan] = {}

    def plan(self, params: dict[str, ParamValue]) -> Plan:
        key = tuple(params.items())
        found = self._plans.get(key)
        if found is None:
            if len(self._plans) >= PLANS_PER_RULE:
                self._plans.clear()
            found = self._plans[key] = prepare(self.condition, params)
        return found


rule_facts: WeakMemo[m.Rule, RuleFacts] = WeakMemo(RuleFacts)


def bind(packs: Sequence[RulePack], site: SitePoints, overrides: ParameterOverrides
         ) -> Iterator[tuple[Binding, m.Rule, Node | None]]:
    """Every (rule, subject) of the enabled rules in pack order: its binding, rule and
    compiled tree (None: a parameter it needs has no value, see `Binding.missing`; the states
    of its points are `site.states[id]` of `Binding.points`). A subject the condition cannot
    be bound to (`Unbindable`) is left out."""
    states = site.states
    for pack in packs:
        for rule in pack.rules:
            rule_id = pack.full_id(rule)
            if rule_id in overrides.disabled:
                continue
            facts = rule_facts(rule)
            kind = rule.subject
            resolved: dict[tuple[str | None, str, str],
                           tuple[dict[str, ParamValue], tuple[str, ...], Plan | None]] = {}
            shared: dict[tuple[tuple[str, str], ...],
                         tuple[dict[str, ParamValue], tuple[str, ...], Plan | None]] = {}
            for subject, members, ids in site.subjects(rule):
                first = members[0]
                device = first.device if kind != "room" else None
                key = (device, first.room, first.room_type)
                found = resolved.get(key)
                if found is None:
                    params = overrides.resolve(rule_id, rule.parameters, device=device,
                                               room=first.room, room_type=first.room_type)
                    same = tuple((k, repr(v)) for k, v in params.items())  # 1 is not 1.0
                    found = shared.get(same)
                    if found is None:
                        missing = tuple(n for n in facts.refs if params.get(n) is None)
                        found = shared[same] = (params, missing,
                                                None if missing else facts.plan(params))
                    resolved[key] = found
                params, missing, plan = found
                binding = make_binding(rule_id, subject, kind, first.room, ids, params,
                                       missing)
                if plan is None:
                    yield binding, rule, None
                    continue
                try:
                    node = plan.build(members, states)
                except Unbindable:
                    continue
                yield binding, rule, node
