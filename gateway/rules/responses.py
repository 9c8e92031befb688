"""What the person on site does when an alarm sounds (ISA-18.2's alarm response), by rule.

A rule pack's rules and escalations carry their `response:`; a site's `rules: responses:`
replaces any of them (its own phone numbers, its guard room); the gateway's own alarms (an
output that does not follow its command, a rule that cannot be evaluated) have theirs here. An
escalated output alarm keeps its rule id (`actions.output_no_feedback`) and takes the
escalation's title, so its response is found by that title.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gateway.rules.model import RulePack

BUILTIN_RESPONSES: Mapping[str, str] = {
    "actions.output_no_feedback": (
        "The output named in the alarm was switched on but its feedback did not follow: go "
        "to it, check it really runs (fan turning, siren sounding), its breaker and "
        "contactor; run it by hand if it does not, and report the fault."),
    "actions.output_unexpected_feedback": (
        "The output named in the alarm reports running although the gateway did not switch "
        "it on: check whether it was started by hand or at its local control, or its "
        "feedback wiring is faulty; return it to automatic."),
    "actions.output_failure": (
        "The gateway cannot switch this alarm output (its I/O module does not answer): the "
        "local alarm it drives may stay silent — or, when the alarm names a coil released "
        "by a config change, that relay may still be energised. Check the module's power "
        "and RS-485 wiring; until it answers, patrol the rooms it serves (and switch a "
        "released relay off at the module)."),
    "rules.evaluation_failed": (
        "A safety rule cannot be evaluated, so the hazard it watches may not alarm: patrol "
        "the room it covers and tell the gateway's maintainer which rule the alarm names "
        "(the gateway's log has the error)."),
}
"""Responses of the alarms the gateway raises itself (gateway.actions.supervision,
gateway.safety, gateway.rules.faults), by rule id."""


class Responses:
    """The response shown for an alarm: the site's text, else its rule's or escalation's,
    else the gateway's own (`BUILTIN_RESPONSES`); None when nobody wrote one."""

    def __init__(self, packs: Iterable[RulePack], site: Mapping[str, str] | None = None) -> None:
        by_rule: dict[str, str] = dict(BUILTIN_RESPONSES)
        self._escalations: list[tuple[str, str]] = []
        """(title, full id) of every escalation: its alarm is found by its title."""
        for pack in packs:
            for rule in pack.rules:
                if rule.response is not None:
                    by_rule[pack.full_id(rule)] = rule.response
            for escalation in pack.escalations:
                full_id = f"{pack.pack}.{escalation.id}"
                self._escalations.append((escalation.title, full_id))
                if escalation.response is not None:
                    by_rule[full_id] = escalation.response
        self._by_rule = {**by_rule, **(site or {})}

    def response(self, rule: str, title: str = "") -> str | None:
        if rule.startswith("actions."):
            for escalation_title, full_id in self._escalations:
                # gateway.actions.supervision titles an escalated alarm "<title> (<output>)"
                if title.startswith(escalation_title + " (") and full_id in self._by_rule:
                    return self._by_rule[full_id]
        return self._by_rule.get(rule)


def response_ids(packs: Iterable[RulePack]) -> set[str]:
    """The ids a site's `rules: responses:` may name: every rule and escalation of `packs`
    and the gateway's own alarms."""
    ids = set(BUILTIN_RESPONSES)
    for pack in packs:
        ids.update(pack.full_id(rule) for rule in pack.rules)
        ids.update(f"{pack.pack}.{escalation.id}" for escalation in pack.escalations)
    return ids
