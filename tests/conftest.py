"""The test suite's lanes (markers declared in pyproject.toml; README "Tests" says which make
target runs which):

- `services`: needs a real Mosquitto, VictoriaMetrics, InfluxDB or Prometheus. Added here to
  every test whose fixtures start one (so a new test that asks for `broker` is in this lane
  without saying so); tests that start them by hand say it themselves.
- `process`: starts another process (a `roomwarden` service, the simulator, a fresh
  interpreter, openssl, shellcheck …) or opens a pseudo-terminal. Whole modules: `MODULES`.
- `browser`: drives headless Chromium. Whole modules: `MODULES`.
- `slow`: takes seconds by itself on the CI machine (real-time waits for bus timeouts and
  back-offs, long property-based runs, the drill library): `@pytest.mark.slow` on the test,
  or a whole module in `MODULES`.

`make unit` runs what is in none of them; `make test` runs everything. Under pytest-xdist
(`make test` runs `-n $(TEST_WORKERS) --dist loadscope`, scheduled by
pytest_xdist_make_scheduler below) the tests of one module stay on one worker, so a
module-scoped fixture (the drill library's reports) is built once, and tests/dashboards and
tests/faults each go to one worker as a whole. (`--dist loadgroup` with xdist_group marks split
the modules across workers in a trial with pytest-xdist 3.8: the drill library ran twice.)
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings

# No per-example deadline: the suite runs on a loaded 2-core machine (and on xdist workers), and
# what the property tests check is behaviour, never time (benchmarks measure time).
settings.register_profile("roomwarden", deadline=None)
settings.load_profile("roomwarden")

SERVICE_FIXTURES = frozenset({"broker", "persistent_broker", "subscribers", "victoria",
                              "influx_v1", "fleet"})
"""Fixtures (tests/fixtures, tests/dashboards) that start a real broker or database."""

MODULES: dict[str, tuple[str, ...]] = {
    "tests/apply/test_apply.py": ("slow",),
    "tests/apply/test_apply_releases.py": ("slow",),
    "tests/apply/test_apply_unbound.py": ("slow",),  # a health check's 8 s, a rollback
    "tests/apply/test_service_process.py": ("process", "slow"),
    "tests/apply/test_store_off_loop.py": ("slow",),  # liveness audit L4
    "tests/apply/test_trial.py": ("slow",),
    "tests/bounds/test_file_modes.py": ("slow",),
    "tests/bounds/test_panel_flood.py": ("process", "slow"),
    "tests/bounds/test_yaml_limits.py": ("process", "slow"),
    "tests/central/test_broker_acl.py": ("services", "process", "slow"),
    "tests/central/test_incidents.py": ("services", "process", "slow"),  # issue 12
    "tests/cli/test_check_all.py": ("process",),
    "tests/cli/test_cli_options.py": ("process", "slow"),
    "tests/cli/test_config_apply_version.py": ("process", "slow"),
    "tests/cli/test_durations.py": ("process", "slow"),
    "tests/continuity/test_apply_continuity.py": ("services", "slow"),
    "tests/continuity/test_restart_continuity.py": ("services", "process", "slow"),
    "tests/control/test_live_socket.py": ("process",),  # liveness audit L2
    "tests/demo/test_demo.py": ("services", "process", "slow"),
    "tests/demo/test_demo_calm.py": ("process", "slow"),
    "tests/demo/test_demo_dashboards.py": ("services", "process", "slow"),
    "tests/drills/test_drills.py": ("process", "slow"),
    "tests/drills/test_wire_drills.py": ("process", "slow"),
    "tests/faults/test_broker_forgets.py": ("services", "process", "slow"),
    "tests/faults/test_uplink_faults.py": ("services", "process", "slow"),
    "tests/field/test_serial_text.py": ("process",),
    "tests/flashing/test_store.py": ("process", "slow"),
    "tests/ingest/test_ingest_process.py": ("services", "process"),
    "tests/operator/test_cli.py": ("services", "process", "slow"),
    "tests/ops/test_lazy_imports.py": ("process",),
    "tests/ops/test_producer_builds_no_validator.py": ("process",),  # issue 15
    "tests/ops/test_site_health.py": ("process", "slow"),
    "tests/panel/test_browser.py": ("browser", "slow"),
    "tests/panel/test_browser_console.py": ("browser", "slow"),
    "tests/panel/test_browser_flood.py": ("browser", "slow"),  # audit F7
    "tests/panel/test_end_to_end.py": ("browser", "process", "slow"),
    "tests/panel/test_browser_events.py": ("browser", "process", "slow"),  # issue 12 views
    "tests/recorder/test_fire_incident.py": ("slow",),  # its report test: browser, process
    "tests/rules/test_rules_doc.py": ("process",),
    "tests/service/test_asleep_when_idle.py": ("slow",),
    "tests/service/test_install.py": ("process",),
    "tests/service/test_journal_locked.py": ("process", "slow"),  # liveness audit L1
    "tests/service/test_one_instance.py": ("process", "slow"),  # liveness audit L2
    "tests/service/test_state_lock.py": ("process",),
    "tests/service/test_units.py": ("process",),
    "tests/service/test_watchdog.py": ("slow",),
    "tests/uplink/test_alarm_after_journal.py": ("slow",),  # liveness audit L1
    "tests/uplink/test_outbox_crash.py": ("process",),
    "tests/uplink/test_stop_while_connecting.py": ("process", "slow"),  # liveness audit L3
    "tests/uplink/test_telemetry_hold.py": ("process",),
    "tests/uplink/test_telemetry_hold_crash.py": ("services", "process", "slow"),
    "tests/uplink/test_tls_auth.py": ("services", "process", "slow"),
}
"""Modules whose every test is in these lanes (started by hand rather than by a fixture)."""

LONG_PROPERTY = ("tests/rules/test_change_driven.py::"
                 "test_change_driven_rounds_equal_evaluating_everything_long")
"""The change-driven property's long runs: all CPU (~140 CPU-s for the three sites), so each
site's run is a work unit of its own (SPLIT_UNITS) instead of holding one worker for three
minutes."""

LONGEST_FIRST = (
    "tests/faults/",                            # ~300 s, one unit (PACKAGE_UNITS)
    "tests/continuity/test_rate_warm_start.py",  # ~155 s: a one-hour rate window, restarts
    "tests/drills/test_wire_drills.py",         # ~120 s: 2-minute drills in real time
    "tests/drills/test_drills.py",              # ~115 s, both cores at nice 10 (~105 CPU-s)
    "tests/actions/test_driver.py",             # ~90 s: a welded relay's back-off over 60 s
    "tests/central/test_incidents.py",          # ~75 s
    "tests/continuity/test_apply_continuity.py",  # ~65 s
    "tests/panel/test_browser_console.py",      # ~60 s
    LONG_PROPERTY + "[datacenter_lithium_room]",  # ~55 s CPU
    "tests/recorder/test_fire_incident.py",     # ~50 s
    "tests/rules/test_change_driven.py",        # ~50 s CPU (the short runs)
    "tests/demo/test_demo_calm.py", "tests/demo/test_demo.py",  # ~50 s each
    LONG_PROPERTY,                              # the two other sites, ~45 and ~35 s CPU
    "tests/drills/test_live_drill.py", "tests/field/test_over_the_wire.py",
    "tests/flashing/test_envelope.py", "tests/apply/test_apply.py",
    "tests/flashing/test_store.py", "tests/panel/test_browser_events.py",
    "tests/continuity/test_restart_continuity.py", "tests/central/test_broker_acl.py",
    "tests/bounds/test_panel_flood.py", "tests/dashboards/", "tests/panel/test_api.py",
    "tests/apply/test_trial.py", "tests/bounds/test_yaml_limits.py",
    "tests/cli/test_cli_options.py", "tests/central/", "tests/demo/", "tests/continuity/")
"""Work units of about 25 s or more (wall time in a six-worker make test on the quiet 2-core
machine, 3 Dec 2026 21:42 UTC; a test id or a path prefix), run first, longest first: xdist
hands out units in this order (pytest_xdist_make_scheduler below), so a long one started last
would leave the other workers idle at the end (in that run the change-driven property, listed
nowhere, started at 308 s and ended the suite at 496 s while the other five workers were done
at ~375 s). Within a module the order is kept."""


def _rank(item: pytest.Item) -> int:
    return next((i for i, p in enumerate(LONGEST_FIRST) if item.nodeid.startswith(p)),
                len(LONGEST_FIRST))


SPLIT_UNITS = (LONG_PROPERTY,)
"""Tests each of which is a work unit of its own (each parametrisation apart)."""

PACKAGE_UNITS = ("tests/dashboards/", "tests/faults/")
"""Packages whose tests are one xdist work unit: tests/dashboards shares a package-scoped fleet;
the two fault tests (the 2-minute ingest outage, then the 66-second fault timeline) each run a
gateway at ~1,600 points/s, and the second asserts >= 1,000 points/s: one after the other, they
never compete for the CPU."""


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadscope` as this suite needs it: a module is one work unit, and a package of
    PACKAGE_UNITS one unit as a whole; the units go out in collection order (LONGEST_FIRST), not
    reordered by test count (xdist's default, which sent one-test modules such as the 3-minute
    broker-forgets test last); and a worker holds one unit besides the one it runs (xdist's
    default, up to 2 pending tests, queued more one-test modules behind a long one while other
    workers ran dry)."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling
    from xdist.workermanage import WorkerController

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(SPLIT_UNITS):
                return nodeid
            unit = next((p for p in PACKAGE_UNITS if nodeid.startswith(p)), None)
            return unit or super()._split_scope(nodeid)

        def _reschedule(self, node: WorkerController) -> None:
            if node.shutting_down:
                return
            if not self.workqueue:
                node.shutdown()
                return
            # a worker starts a test only once the next one is queued (pytest's nextitem)
            if self._pending_of(self.assigned_work[node]) <= 1:
                self._assign_work_unit(node)

    config.option.loadscopereorder = False
    return Scheduling(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: each module's tests stay together and in order
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)
        path = item.nodeid.split("::", 1)[0]
        for lane in MODULES.get(path, ()):
            item.add_marker(getattr(pytest.mark, lane))
