"""The panel's alarm context (gateway.panel.describe) as the running gateway builds it
(`PanelBackend._describer`, once per rule engine, at the first panel state): it finds a
binding's parameters by asking the engine for that one binding (`RuleEngine.binding`), and
keeps no copy of every binding — which, made and kept for the few alarms a panel shows, was
~1.2 MiB at 2,000 points (6,478 bindings) for as long as the engine ran, from the first time
anyone opened the panel (tracemalloc, not timing). What the cards say is the same."""

from __future__ import annotations

import gc
import tracemalloc
from types import SimpleNamespace

from gateway.clock import ManualClock
from gateway.panel.describe import Describer
from gateway.panel_backend import PanelBackend
from gateway.rules.config import ParameterOverrides
from gateway.rules.engine import RuleEngine
from tests import shipped

SITE = "datacenter_lithium_room"
KEPT_PER_BINDING = 60
"""Bytes a binding the panel's describer may keep (its own tables, ~27 at this site; with a copy
of each binding it kept ~220)."""


def _engine() -> tuple[RuleEngine, object]:
    loaded, packs = shipped.site(SITE), shipped.packs()
    engine = RuleEngine(packs, loaded, ManualClock(), ParameterOverrides.for_site(loaded, packs))
    return engine, loaded


def test_the_panels_describer_keeps_no_copy_of_the_bindings() -> None:
    engine, loaded = _engine()
    backend = SimpleNamespace(core=SimpleNamespace(engine=engine), loaded=loaded,
                              _panel_describer=None)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        describe = PanelBackend._describer(backend, [])  # type: ignore[arg-type]
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    bindings = len(engine.bindings())
    assert bindings > 400
    assert kept / bindings <= KEPT_PER_BINDING, f"{kept / bindings:.0f} B a binding"
    assert PanelBackend._describer(backend, []) is describe  # type: ignore[arg-type]  # kept


def test_the_engine_finds_one_binding_as_it_lists_them() -> None:
    engine, _ = _engine()
    details = engine.binding_details()
    for binding in details[::7] + details[-3:]:
        assert engine.binding(binding.rule, binding.subject) == binding
    rule, subject = details[0].rule, details[0].subject
    assert engine.binding(rule, "no-such-subject") is None
    assert engine.binding("no.such_rule", subject) is None


def test_a_describer_asking_the_engine_says_what_one_given_every_binding_says() -> None:
    engine, loaded = _engine()
    packs = list(engine.packs)
    given = Describer(loaded, packs, engine.binding_details(), {})  # type: ignore[arg-type]
    asking = Describer(loaded, packs, engine.binding, {})  # type: ignore[arg-type]
    for rule, subject in engine.bindings():
        for unit in (None, "°C"):
            assert asking.context(rule, subject, None) == given.context(rule, subject, None)
            assert asking._limit(rule, subject, unit) == given._limit(rule, subject, unit)
