"""Run a drill: play its script on a fast-mode site through the real safety core, then compare
the alarms and outputs observed with the ones expected and forbidden."""

from __future__ import annotations

import fnmatch
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from gateway.alarms.lifecycle import AlarmState
from gateway.clock import ManualClock
from gateway.config.loader import (
    ConfigError,
    ConfigErrors,
    LoadedConfig,
    load_gateway_config,
    read_yaml,
    validate,
)
from gateway.drills.fast_site import FastSite
from gateway.drills.model import Drill, ExpectAlarm, ExpectOutput, ExpectWrites, Step
from gateway.drills.sitecheck import site_problems
from gateway.evaluator import MIN_EVALUATION_SPACING
from gateway.records import dataclass, field
from gateway.rules.config import default_rules_dir, load_rule_packs
from gateway.rules.model import RulePack
from gateway.safety import SafetyCore
from gateway.sim.faults import FaultTable
from gateway.sim.modbus_sim import LogEntry
from gateway.sim.signals import SignalTable

ACTIVE_STATES = {AlarmState.ACTIVE_UNACKNOWLEDGED, AlarmState.ACTIVE_ACKNOWLEDGED}


@dataclass
class Check:
    what: str
    window: tuple[float, float]
    observed: float | None
    ok: bool
    note: str = ""

    @property
    def latency(self) -> float | None:
        return None if self.observed is None else self.observed - self.window[0]


@dataclass
class DrillReport:
    drill: Drill
    path: Path
    checks: list[Check] = field(default_factory=list)
    forbidden: list[str] = field(default_factory=list)
    activations: list[tuple[float, str]] = field(default_factory=list)
    polls: int = 0
    evidence: list[str] = field(default_factory=list)
    """The simulator's coil and input log of the outputs and their feedback points."""

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks) and not self.forbidden

    def render(self) -> str:
        head = f"{'PASS' if self.ok else 'FAIL'}  {self.drill.drill}: {self.drill.title}"
        lines = [head, f"      {self.path}  ({self.drill.duration:g} s simulated, "
                       f"{self.polls} polls, {len(self.activations)} activations)"]
        for check in self.checks:
            low, high = check.window
            seen = ("" if check.what.startswith("writes of") else "never") \
                if check.observed is None else f"at {check.observed:7.1f} s"
            latency = "" if check.latency is None else f"  latency {check.latency:5.1f} s"
            lines.append(f"  {'ok  ' if check.ok else 'MISS'} {check.what:<58} "
                         f"window {low:6.1f}..{high:6.1f} s  {seen}{latency} {check.note}")
        for item in self.forbidden:
            lines.append(f"  FORBIDDEN {item}")
        if self.evidence:
            lines.append("  simulator coil and input log:")
            lines.extend(f"    {line}" for line in self.evidence)
        return "\n".join(lines)


def load_drill(path: Path) -> Drill:
    data, lines = read_yaml(path)
    return validate(Drill, data, str(path), lines)


def site_of(path: Path, drill: Drill) -> Path:
    """The site config an offline run simulates; ConfigErrors for a live-only drill."""
    if drill.site is None:
        raise ConfigErrors([ConfigError(str(path), ("site",), "names no site: a live-only "
                                        "drill (roomwarden drill --live FILE)")])
    return (path.parent / drill.site).resolve()


def check_names(path: Path, drill: Drill, site: FastSite, packs: Iterable[RulePack]) -> None:
    """ConfigErrors (file, path, line, the nearest real name) for what `drill` names that
    its site does not have (gateway.drills.sitecheck)."""
    cfg = site.loaded.config
    problems = site_problems(drill, points=site.point_ids(), coils=site.coil_ids(),
                             devices={d.id for d in cfg.devices},
                             outputs={o.id for o in cfg.outputs}, packs=packs)
    if problems:
        lines = read_yaml(path)[1]
        raise ConfigErrors([ConfigError(str(path), where, reason, lines.line_of(where))
                            for where, reason in problems])


def check_drill(path: Path) -> Drill:
    """`roomwarden check` of a drill file: the file, its site, and every name it uses."""
    drill = load_drill(path)
    loaded = load_gateway_config(site_of(path, drill))
    ids = list(loaded.config.rules.packs) if loaded.config.rules.packs is not None else None
    check_names(path, drill, FastSite(loaded, ManualClock(start_mono=0.0), seed=drill.seed),
                load_rule_packs(default_rules_dir(), ids).values())
    return drill


def run_drill(path: Path, packs: dict[str, RulePack] | None = None) -> DrillReport:
    drill = load_drill(path)
    loaded = load_gateway_config(site_of(path, drill))
    clock = ManualClock(start_mono=0.0)
    site = FastSite(loaded, clock, seed=drill.seed)
    report = DrillReport(drill, path)
    with tempfile.TemporaryDirectory(prefix="roomwarden-drill-") as tmp:
        core = SafetyCore(loaded, clock, Path(tmp) / "journal.sqlite", packs=packs)
        try:
            check_names(path, drill, site, core.engine.packs)
        except ConfigErrors:
            core.close()
            raise
        try:
            _play(drill, site, core, clock, report)
        finally:
            core.close()
    return report


def _play(drill: Drill, site: FastSite, core: SafetyCore, clock: ManualClock,
          report: DrillReport) -> None:
    steps = sorted(drill.steps, key=lambda s: s.at)
    first_active: dict[tuple[str, str], float] = {}
    severities: dict[tuple[str, str], str] = {}
    output_changes: dict[str, list[tuple[float, bool]]] = {o: [] for o in core.outputs}
    last_wanted = dict(core.wanted)
    next_tick = drill.tick

    def evaluate() -> None:
        for event in core.step():
            if event.kind != "alarm" or AlarmState(event.state) not in ACTIVE_STATES:
                continue
            if AlarmState(event.previous_state) in ACTIVE_STATES:
                continue
            now = clock.monotonic()
            key = (event.rule, event.subject)
            report.activations.append((now, f"{event.rule} @ {event.subject}"))
            first_active.setdefault(key, now)
            severities.setdefault(key, str(event.severity))
        site.drive(core.wanted)
        for output_id, on in core.wanted.items():
            if last_wanted.get(output_id) != on:
                output_changes[output_id].append((clock.monotonic(), on))
                last_wanted[output_id] = on

    while clock.monotonic() < drill.duration:
        until = min([drill.duration, next_tick, *(s.at for s in steps[:1])])
        due = site.next_due()
        if due <= until:
            # Like the daemon: evaluate as soon as samples arrive, but at most every
            # MIN_EVALUATION_SPACING, so batches due together are evaluated together.
            for batch in site.polls_until(min(due + MIN_EVALUATION_SPACING, until)):
                report.polls += 1
                core.ingest(batch)
            evaluate()
        else:
            for _ in site.polls_until(until):
                pass  # nothing is due: just move the clock
        while steps and steps[0].at <= clock.monotonic():
            _apply(steps.pop(0), site, core)
            evaluate()
        if clock.monotonic() >= next_tick:
            evaluate()
            next_tick += drill.tick

    log = site.log()
    report.evidence = evidence(log, core.loaded)
    judge(drill, first_active, severities, output_changes, report, write_log(log))


def write_log(log: list[LogEntry], origin: float = 0.0) -> dict[str, list[float]]:
    """Coil point → the times (s after `origin`) the simulator took a write of it."""
    writes: dict[str, list[float]] = {}
    for entry in log:
        if entry.kind == "write":
            writes.setdefault(entry.point, []).append(entry.t - origin)
    return writes


def judge(drill: Drill, first_active: dict[tuple[str, str], float],
          severities: dict[tuple[str, str], str],
          output_changes: dict[str, list[tuple[float, bool]]], report: DrillReport,
          writes: dict[str, list[float]]) -> None:
    """Compare what was observed (first activation of each alarm, with its severity; output
    switchings; coil writes at the simulator) with the drill's expectations, windows and
    forbidden alarms."""
    for item in drill.expect:
        window = (item.after, item.after + item.within)
        if isinstance(item, ExpectWrites):
            count = sum(window[0] <= t <= window[1] for t in writes.get(item.writes, []))
            report.checks.append(Check(
                f"writes of {item.writes} at most {item.at_most}", window, None,
                count <= item.at_most, f"({count} at the simulator)"))
            continue
        if isinstance(item, ExpectAlarm):
            times = [t for (rule, subject), t in first_active.items()
                     if rule == item.alarm and item.subject in (None, subject)
                     and item.severity in (None, severities.get((rule, subject)))]
            observed = min(times) if times else None
            what = f"alarm {item.alarm}" + (f" @ {item.subject}" if item.subject else "") + (
                f" ({item.severity})" if item.severity else "")
        else:
            assert isinstance(item, ExpectOutput)
            times = [t for t, on in output_changes.get(item.output, []) if on == item.turns]
            observed = min(times) if times else None
            what = f"output {item.output} {'on' if item.turns else 'off'}"
        ok = observed is not None and window[0] <= observed <= window[1]
        note = "" if ok or observed is None else (
            "(too early: false alarm)" if observed < window[0] else "(too late)")
        report.checks.append(Check(what, window, observed, ok, note))

    expected = [(i.alarm, i.subject) for i in drill.expect if isinstance(i, ExpectAlarm)]
    for (rule, subject), at in sorted(first_active.items(), key=lambda kv: kv[1]):
        if any(rule == r and s in (None, subject) for r, s in expected):
            continue  # an expected alarm (of the expected subject) is not forbidden
        if any(fnmatch.fnmatchcase(rule, p) or fnmatch.fnmatchcase(f"{rule}@{subject}", p)
               for p in drill.allow):
            continue
        if any(fnmatch.fnmatchcase(rule, pattern) for pattern in drill.forbid):
            report.forbidden.append(f"{rule} @ {subject} at {at:.1f} s")


def evidence(log: list[LogEntry], loaded: LoadedConfig, limit: int = 40,
             origin: float = 0.0) -> list[str]:
    """The log lines of output coils and feedback points: writes and changes, with repeated
    writes of one value folded into a count (a stuck relay's retries); times in seconds after
    `origin`."""
    watched = {f"{o.device}.{o.point}" for o in loaded.config.outputs}
    watched |= {f"{o.feedback.device}.{o.feedback.point}" for o in loaded.config.outputs
                if o.feedback is not None}
    lines: list[str] = []
    last: tuple[str, object, str] | None = None
    count = 0
    for entry in log:
        if entry.point not in watched:
            continue
        key = (entry.point, entry.value, entry.kind)
        if key == last and entry.kind == "write":
            count += 1
            lines[-1] = (f"{lines[-1].split('  (x')[0]}  (x{count + 1}, last "
                         f"{entry.t - origin:.1f} s)")
            continue
        last, count = key, 0
        lines.append(f"{entry.t - origin:8.1f} s  {entry.kind:<6} {entry.point} = "
                     f"{entry.value}")
    return lines[-limit:] if len(lines) > limit else lines


class Scene(Protocol):
    """What a drill step acts on: the simulated site's signals and faults (fast or wire)."""

    signals: SignalTable
    faults: FaultTable

    def stick(self, point_id: str, state: bool | None) -> None: ...


def _apply(step: Step, site: Scene, core: SafetyCore) -> None:
    if step.set is not None:
        for point, signal in step.set.items():
            site.signals.set(point, signal)
    elif step.fault is not None:
        site.faults.set(step.fault.device, step.fault)
    elif step.release is not None:
        for point in step.release:
            site.signals.release(point)
    elif step.stick is not None:
        site.stick(step.stick.point, step.stick.state)
    elif step.acknowledge is not None:
        keys = [v.key for v in core.alarms.active() if v.acknowledgeable and (
            step.acknowledge == "all" or v.key.rule in step.acknowledge)]
        if keys:
            core.alarms.acknowledge(keys, "drill", "drill step")
