"""The drill library (`edge_rules/drills/`): every drill passes on the real safety core, every
shipped rule is fired by at least one drill on a site that binds it, and every shipped site
has a quiet (normal-noise) drill of at least 2 h in which nothing may fire.

Output supervision alarms (`actions.output_no_feedback`, `actions.output_unexpected_feedback`)
count as rules bound to every output with a `feedback`; every pack escalation must be shown by a
drill that expects its alarm at the escalated severity.

The drills run on a manual clock, but the rule engine evaluates after every poll batch, so a
simulated hour still costs 2.5-10 s of CPU (the whole library about 80 s). They run in worker
processes (one per CPU, longest first, at a lower CPU priority: NICENESS); the rule packs are
loaded once, before the workers are forked.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from gateway.actions.supervision import NO_FEEDBACK_RULE, UNEXPECTED_FEEDBACK_RULE
from gateway.clock import ManualClock
from gateway.config.loader import LoadedConfig, load_gateway_config
from gateway.drills.model import Drill, ExpectAlarm
from gateway.drills.runner import load_drill, run_drill
from gateway.rules.config import ParameterOverrides, default_rules_dir, load_rule_packs
from gateway.rules.engine import RuleEngine
from gateway.rules.model import RulePack

REPO = Path(__file__).resolve().parents[2]
DRILLS_DIR = REPO / "edge_rules" / "drills"
DRILLS = sorted(DRILLS_DIR.glob("*.yaml"))
CONFIGS = sorted((REPO / "firmware_configs").glob("*.yaml"))
QUIET_MIN_S = 2 * 3600.0

pytestmark = pytest.mark.timeout(2400)
"""All drills run in the module fixture: minutes of CPU, more on a loaded machine."""

PACKS: dict[str, RulePack] = load_rule_packs(default_rules_dir())
"""Loaded once at import: the forked workers inherit them."""


def _site_of(drill: Drill, path: Path) -> Path:
    assert drill.site is not None, f"{path}: an offline drill names its site"
    return (path.parent / drill.site).resolve()


@functools.cache
def _loaded(site: Path) -> LoadedConfig:
    """A shipped site's config, loaded once for every drill on it (the checks only read it)."""
    return load_gateway_config(site)


def _cost(path: Path) -> float:
    """Polls the drill will make (what its run time is proportional to)."""
    drill = load_drill(path)
    loaded = _loaded(_site_of(drill, path))
    rate = 0.0
    for device in loaded.config.devices:
        if device.enabled:
            interval = device.poll_interval or loaded.profile_of(device).default_poll_interval
            rate += 1.0 / interval
    return drill.duration * rate


def _run(path: Path) -> tuple[bool, str]:
    report = run_drill(path, PACKS)
    return report.ok, report.render()


NICENESS = 10
"""The drill workers yield the CPU to everything else: they run on a manual clock, so being
slowed costs them time and no correctness, while under `make test` the other xdist workers run
real-time tests (bus timeouts, fault timelines, points/s) that a busy CPU could push late."""


@pytest.fixture(scope="module")
def reports() -> Iterator[dict[Path, tuple[bool, str]]]:
    order = sorted(DRILLS, key=_cost, reverse=True)
    workers = max(1, min(os.cpu_count() or 1, len(order)))
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=os.nice,
                             initargs=(NICENESS,)) as pool:
        results = dict(zip(order, pool.map(_run, order), strict=True))
    yield results


def test_there_are_drills() -> None:
    assert DRILLS, f"no drills in {DRILLS_DIR}"


@pytest.mark.parametrize("path", DRILLS, ids=[p.stem for p in DRILLS])
def test_drill_passes(path: Path, reports: dict[Path, tuple[bool, str]]) -> None:
    ok, rendered = reports[path]
    print(rendered)
    assert ok, f"drill failed:\n{rendered}"


_ENGINES: dict[Path, RuleEngine] = {}


def _engine(site: Path) -> RuleEngine:
    if site not in _ENGINES:
        loaded = _loaded(site)
        _ENGINES[site] = RuleEngine(PACKS, loaded, ManualClock(start_mono=0.0),
                                    ParameterOverrides.for_site(loaded, PACKS))
    return _ENGINES[site]


SUPERVISION = (NO_FEEDBACK_RULE, UNEXPECTED_FEEDBACK_RULE)
"""Output supervision alarms: bound to every output with a `feedback`."""


def _bindings(site: Path) -> set[tuple[str, str]]:
    supervised = {(rule, output.id) for output in _loaded(site).config.outputs
                  if output.feedback is not None for rule in SUPERVISION}
    return set(_engine(site).bindings()) | supervised


def test_every_rule_is_fired_by_a_drill_on_a_site_that_binds_it() -> None:
    every = {pack.full_id(rule) for pack in PACKS.values() for rule in pack.rules}
    every |= set(SUPERVISION)
    covered: dict[str, list[str]] = {}
    unbound: list[str] = []
    for path in DRILLS:
        drill = load_drill(path)
        bindings = _bindings(_site_of(drill, path))
        bound_rules = {rule for rule, _ in bindings}
        for item in drill.expect:
            if not isinstance(item, ExpectAlarm):
                continue
            if item.alarm not in bound_rules or (
                    item.subject is not None and (item.alarm, item.subject) not in bindings):
                unbound.append(f"{path.name}: {item.alarm} @ {item.subject} is not bound on "
                               f"{drill.site}")
                continue
            covered.setdefault(item.alarm, []).append(path.stem)
    assert not unbound, "\n".join(unbound)
    missing = sorted(every - covered.keys())
    assert not missing, f"rules no drill fires: {missing}"
    assert not covered.keys() - every, f"drills expect unknown rules: {covered.keys() - every}"


def test_every_escalation_is_shown_by_a_drill() -> None:
    """An escalation is shown by a drill expecting its alarm at the escalated severity."""
    shown = {(item.alarm, item.severity) for path in DRILLS for item in load_drill(path).expect
             if isinstance(item, ExpectAlarm) and item.severity is not None}
    missing = [f"{pack.pack}.{e.id}" for pack in PACKS.values() for e in pack.escalations
               if (f"actions.{e.alarm}", e.severity) not in shown]
    assert not missing, f"escalations no drill shows: {missing}"


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_site_has_a_quiet_drill(config: Path) -> None:
    quiet = []
    for path in DRILLS:
        drill = load_drill(path)
        if _site_of(drill, path) != config.resolve():
            continue
        if drill.forbid == ("*",) and not drill.steps and not drill.expect \
                and drill.duration >= QUIET_MIN_S:
            quiet.append(path.name)
    assert quiet, (f"{config.name} has no quiet drill (no steps, no expectations, "
                   f"forbid ['*'], >= 2 h)")
