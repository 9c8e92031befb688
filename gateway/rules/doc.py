"""docs/rules.md, generated from the rule packs: every rule's id, title, severity, selection,
parameters with their defaults (and per battery chemistry), basis, minimum detection time and
actions; the output supervision alarms and the packs' escalations; the output roles.

    python -m gateway.rules.doc > docs/rules.md          # regenerate
    python -m gateway.rules.doc --check docs/rules.md    # exit 1 if it is out of date

tests/rules/test_rules_doc.py runs the check, so the reference cannot drift from the packs.
"""

from __future__ import annotations

import argparse
import sys
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path

from gateway.actions.supervision import NO_FEEDBACK_RULE, UNEXPECTED_FEEDBACK_RULE
from gateway.config.outputs import PROTECTIVE_ROLES
from gateway.config.site import OutputRole
from gateway.rules import model as m
from gateway.rules.config import default_rules_dir, load_rule_packs
from gateway.rules.faults import EVALUATION_FAILED_RULE, FAILED_BINDING_RETRY
from gateway.rules.rate import DEFAULT_MIN_SPAN
from gateway.rules.responses import BUILTIN_RESPONSES
from gateway.rules.section import ParamValue
from gateway.safety import OUTPUT_FAILURE_RULE

ROLE_NOTES = {
    "siren": "sounds while a demanding alarm is active and unacknowledged (acknowledge "
             "silences it)",
    "strobe": "flashes while a demanding alarm's condition is active",
    "exhaust_fan": "runs while a demanding alarm's condition is active (H2 from 10 % LEL, "
                   "off-gas, detector failure, cell temperature rise); supervise it with "
                   "`feedback:`",
    "alarm_panel": "a common-alarm relay to an attended location (fire panel, BMS input)",
    "hvac_stop": "stops air handling (e.g. recirculation while purging gas)",
    "charge_inhibit": "opens the charger's / PCS's charge-enable contact: asked by H2 at 25 % "
                      "LEL, cell over-voltage and over-temperature, block above ambient, "
                      "off-gas, cell temperature rise and the fan-failure escalation",
    "other": "any other relay; no shipped rule asks for it",
}


def _fmt(value: ParamValue) -> str:
    if value is None:
        return "— (set per site)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}"


def _seconds(value: float) -> str:
    if value >= 3600 and value % 3600 == 0:
        return f"{value / 3600:g} h"
    if value >= 60 and value % 60 == 0:
        return f"{value / 60:g} min"
    return f"{value:g} s"


class _Params:
    def __init__(self, values: Mapping[str, ParamValue]) -> None:
        self.values = values

    def num(self, value: float | str | None) -> float | None:
        if isinstance(value, str):
            resolved = self.values.get(value[1:])
            return None if resolved is None or isinstance(resolved, bool) else float(resolved)
        return value


def detection_time(condition: m.Condition, params: _Params, warm: bool = False
                   ) -> float | None:
    """The shortest time from a hazard's start to the condition becoming active, on samples
    that arrive continuously (add one poll interval of the point): delays, the rate's minimum
    span, stale/flatline/invalid durations. None when a parameter has no default. `warm`: a
    restart whose saved rate windows already hold the trend (no span to wait for)."""
    if isinstance(condition, m.All | m.AtLeast):
        children = condition.all if isinstance(condition, m.All) else (
            condition.at_least.of or ((condition.at_least.each,)
                                      if condition.at_least.each else ()))
        times = [detection_time(c, params, warm) for c in children]
        return None if any(t is None for t in times) else max(t or 0.0 for t in times)
    if isinstance(condition, m.AnyOf):
        known = [t for t in (detection_time(c, params, warm) for c in condition.any)
                 if t is not None]
        return min(known) if known else None
    if isinstance(condition, m.Stale):
        return params.num(condition.stale)
    if isinstance(condition, m.Flatline):
        return params.num(condition.flatline.window)
    if isinstance(condition, m.Invalid):
        return params.num(condition.invalid_for)
    delay = params.num(condition.on_delay)
    if delay is None:
        return None
    signal = condition.signal
    if isinstance(signal, m.RateSignal):
        if warm:
            return delay
        window = params.num(signal.rate.window)
        span = params.num(signal.rate.min_span) if signal.rate.min_span is not None else (
            None if window is None else DEFAULT_MIN_SPAN * window)
        return None if span is None else delay + span
    return delay


def _has_rate(condition: m.Condition) -> bool:
    if isinstance(condition, m.All):
        return any(_has_rate(c) for c in condition.all)
    if isinstance(condition, m.AnyOf):
        return any(_has_rate(c) for c in condition.any)
    if isinstance(condition, m.AtLeast):
        spec = condition.at_least
        return any(_has_rate(c) for c in (*(spec.of or ()), *((spec.each,) if spec.each
                                                                 else ())))
    return isinstance(condition, m.Compare) and isinstance(condition.signal, m.RateSignal)


def _selection(rule: m.Rule) -> str:
    select = rule.select
    parts = []
    if select.quantity:
        parts.append("quantity " + ", ".join(f"`{q}`" for q in select.quantity))
    else:
        parts.append("every point with a quantity")
    if select.exclude_quantity:
        parts.append("except " + ", ".join(f"`{q}`" for q in select.exclude_quantity))
    if select.room_type:
        parts.append("in rooms of type " + ", ".join(select.room_type))
    if select.room:
        parts.append("in rooms " + ", ".join(select.room))
    if select.profile:
        parts.append("profile " + ", ".join(select.profile))
    if select.device_has:
        parts.append("on devices that have " + ", ".join(f"`{q}`" for q in select.device_has))
    if select.min_members > 1:
        parts.append(f"at least {select.min_members} points per {rule.subject}")
    return "; ".join(parts) + f" — one alarm per {rule.subject}"


def _rule(pack: m.RulePack, rule: m.Rule) -> list[str]:
    params = _Params(rule.parameters)
    detect = detection_time(rule.condition, params)
    warm = detection_time(rule.condition, params, warm=True)
    lines = [f"### `{pack.full_id(rule)}` — {rule.title}", "",
             f"- **Severity:** {rule.severity}" + (" (latching)" if rule.latching else ""),
             f"- **Selects:** {_selection(rule)}",
             "- **Parameters** (durations in s): " + (", ".join(f"`{k}` = {_fmt(v)}"
                                               for k, v in rule.parameters.items()) or "none")]
    for chemistry, defaults in rule.chemistry.items():
        values = ", ".join(f"`{k}` = {_fmt(v)}" for k, v in defaults.set.items())
        lines.append(f"  - `chemistry: {chemistry}`: {values} — {defaults.basis}")
    lines.append(f"- **Basis:** {' '.join(rule.basis.split())}")
    lines.append("- **Minimum detection time:** " + (
        f"{_seconds(detect)} + one poll of the point" if detect is not None
        else "needs its parameters set per site") + (
        "; after a restart, " + (f"{_seconds(warm)} + " if warm else "")
        + "one poll for a trend already in its saved window"
        if warm is not None and detect is not None and _has_rate(rule.condition) else ""))
    lines.append("- **Actions:** " + (", ".join(f"`{a}`" for a in rule.actions) or "none"))
    lines += _response(rule.response)
    lines.append("")
    return lines


def _response(text: str | None) -> list[str]:
    return [f"- **What to do:** {text}"] if text else []


def _todo(rule: str) -> str:
    return f"*What to do:* {BUILTIN_RESPONSES[rule]}"


def _escalation(pack: m.RulePack, escalation: m.Escalation) -> list[str]:
    return [f"### `{pack.pack}.{escalation.id}` — {escalation.title}", "",
            f"- **Escalates:** `actions.{escalation.alarm}` of outputs with role "
            + ", ".join(f"`{r}`" for r in escalation.roles)
            + (" serving rooms of type " + ", ".join(escalation.room_type)
               if escalation.room_type else ""),
            "- **While:** an alarm of " + ", ".join(f"`{p}`" for p in escalation.while_active)
            + " has its condition present in a room the output serves",
            f"- **Severity:** {escalation.severity}",
            f"- **Basis:** {' '.join(escalation.basis.split())}",
            "- **Actions:** " + (", ".join(f"`{a}`" for a in escalation.actions) or "none"),
            *_response(escalation.response), ""]


HEADER = """# Rule reference

Generated from the rule packs in `edge_rules/` by `python -m gateway.rules.doc > docs/rules.md`
(a test fails when this page and the packs disagree). Every threshold is a parameter: override
it per site, room type, room or device in the gateway config's `rules: parameters:` (the most
specific wins: device > room > room type > site > chemistry default > default). `roomwarden
check` judges the values every room and device ends up with: an override that leaves a band
empty (`low` above `high` of a rule alarming outside [low, high], with the values it inherits
from the other scopes and the defaults) or a rate window of 0 s is refused, naming it.

**Battery chemistry.** A room or a device may declare `chemistry: vrla | vla | lfp | nmc`
(a device's wins over its room's). Rules with per-chemistry defaults list them below with their
basis; a site override still wins. `nmc` has no values of its own in the packs yet (the domain
reference gives none): such rules keep their generic defaults.

**What to do.** Every rule, escalation and alarm of the gateway's own says what the person on
site does when it sounds (`response:` in the packs), shown on the panel's alarm card under
*What to do*. A site writes its own for any of them — its guard room's extension, its
evacuation route — in the gateway config's `rules: responses:` (`fire.smoke_coincidence: "Call
the guard room, ext. 2100, …"`: one paragraph, at most 400 characters); `roomwarden check`
names an id that no loaded pack has, and warns of a rule that binds at the site with no
response (a site's own pack).

**Minimum detection time** is the shortest time from a hazard's start to its alarm on samples
that arrive continuously: the on-delay, for rate rules the minimum span of good samples before
a slope is judged (`min_span`, default a quarter of the window), for stale/flatline/invalid
rules their duration. Add one poll interval of the point. A rate rule judges its slope as soon
as that span is in its window — after a start, an apply or a gap in the data too.

**Rate windows survive applies and restarts.** An apply carries them into the new rule engine.
For a restart the gateway saves the samples its rate windows hold (`rate_windows.bin` in the
state directory) every tenth of its longest rate window — between 10 s and 1 min; 1 min with
the shipped packs; longer for a large file, within 48 MiB of writes a day — when a window's
values moved since the last save (a still room writes nothing), and at a clean stop, and a new
process fills its windows from them
(`gateway/rules/warm.py`): a trend already in the saved window (a cooling loss that began before
the restart) is judged at the first poll after it, not `min_span` later. A crash or power cut
loses at most one save period of samples; a stop longer than the window, or a point whose
device or profile changed, starts cold (`min_span` again).

**The noise guard is two-sided.** A slope comes with ± `confidence` standard errors of the fit.
A rate rule is past its limit only when the whole interval is, and "not exceeded" only when the
whole interval is below; while the interval straddles the limit the condition is unknown and
keeps its state — so a short or noisy span right after a start neither raises nor returns an
alarm. The value shown is the interval's calm end (the slope less its margin). The price of
judging early: a sudden step (a sensor swapped, a set point jumped by 1 °C) within the first
minutes of a window reads as a steep rate; in a filled window the same step reads as a slow
one.

**A sample leaves its window with a sample that arrives.** On a steady poll the oldest sample's
time to leave falls a few milliseconds before or after the next sample's arrival; the gateway
judges both in one round. A window's length is kept to one slot (the window / 240, at most
1 s: 0.25 s in a 1-min window): judged when a sample arrives, a window holds its length less
a slot; a point that stops reporting has its oldest samples leave a slot after their time.
"""


def render(packs: Iterable[m.RulePack]) -> str:
    packs = sorted(packs, key=lambda p: p.pack)
    lines = [HEADER]
    count = sum(len(p.rules) for p in packs)
    lines.append(f"{count} rules in {len(packs)} packs: "
                 + ", ".join(f"[{p.pack}](#{p.pack}) ({len(p.rules)})" for p in packs) + ".\n")
    for pack in packs:
        lines += [f"## {pack.pack}", "", pack.title + ".", ""]
        for rule in pack.rules:
            lines += _rule(pack, rule)
    lines += ["## Output supervision", "",
              "An output with `feedback: {device, point, expect, within}` (README, *Local alarm "
              "outputs*) is watched against what the gateway commands "
              "(`gateway/actions/supervision.py`):", "",
              f"- `{NO_FEEDBACK_RULE}` (major): commanded on, but the feedback point has not "
              "shown `expect` for `within` — a fan whose airflow switch stays open, a siren "
              "drawing no current. Minimum detection time: `within` + one poll of the feedback "
              "point. " + _todo(NO_FEEDBACK_RULE),
              f"- `{UNEXPECTED_FEEDBACK_RULE}` (major): commanded off, but the feedback shows "
              "`expect` for `within` — a welded contactor, a fan on manual. "
              + _todo(UNEXPECTED_FEEDBACK_RULE),
              f"- `{OUTPUT_FAILURE_RULE}` (major): a write to the output's coil failed "
              "(no reply, or it reads back wrong); retried on the output's `backoff`. Also "
              "raised when a coil the output drove under an earlier config — released by a "
              "config apply that moved or dropped the output — is not confirmed off after "
              "its first try, or no bus reaches its line (the value names the coil; "
              "`gateway/actions/failures.py`), until it is confirmed off or a config drives "
              "it again. "
              + _todo(OUTPUT_FAILURE_RULE), "",
              "Both supervision alarms are made more severe by the packs' escalations:", ""]
    for pack in packs:
        for escalation in pack.escalations:
            lines += _escalation(pack, escalation)
    lines += ["## Rules that cannot be evaluated", "",
              f"- `{EVALUATION_FAILED_RULE}` (major, no outputs): evaluating one rule for one "
              "subject raised (a bug, or a value nobody foresaw); the subject is "
              "`<rule>@<subject>`, the room the binding's, the value the error. That binding "
              "keeps its last good result (an active alarm stays active, its outputs on); the "
              "other rules are evaluated as ever; it is tried again at its next sample and at "
              f"least every {FAILED_BINDING_RETRY:g} s, and the alarm returns to normal at its "
              "first good evaluation (`gateway/rules/faults.py`). "
              + _todo(EVALUATION_FAILED_RULE), ""]
    lines += ["## Output roles", "",
              "Rules name output *roles*; a site maps each to a relay coil (`outputs:`). A "
              "*protective* output acts on the hazard: a shelved or suppressed alarm hides "
              "from the operator but keeps its protective outputs on while its condition is "
              "active (or it is latched — a latching rule's alarm latches under a shelf or "
              "suppression too, until an acknowledge after it ends), and none of the others "
              "(ISA-18.2 / IEC 62682: "
              "shelving is a function of the display, not of the protection). An output's "
              "`protective: true | false` overrides its role's default, e.g. an `other` "
              "output that shuts a gas valve.", "",
              "| role | what it does | protective |", "|---|---|---|"]
    for role in typing.get_args(OutputRole):
        protective = "yes" if role in PROTECTIVE_ROLES else "no"
        lines.append(f"| `{role}` | {ROLE_NOTES[role]} | {protective} |")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.rules.doc",
                                     description="Write docs/rules.md from the rule packs.")
    parser.add_argument("--rules-dir", type=Path, default=None)
    parser.add_argument("--check", type=Path, metavar="FILE",
                        help="compare FILE with what would be generated; exit 1 if it differs")
    args = parser.parse_args(argv)
    text = render(load_rule_packs(args.rules_dir or default_rules_dir()).values())
    if args.check is not None:
        current = args.check.read_text(encoding="utf-8") if args.check.is_file() else ""
        if current != text:
            print(f"{args.check} is out of date: run python -m gateway.rules.doc > "
                  f"{args.check}", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
