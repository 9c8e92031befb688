"""/metrics over real HTTP from a real gateway polling the simulator, parsed with
prometheus_client's own parser and checked against the gateway's state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway import __version__
from gateway.clock import ManualClock
from gateway.config.loader import load_gateway_config
from gateway.contract.wire import MessageKind
from gateway.daemon import Gateway
from gateway.ops.collector import ALARM_STATES
from gateway.ops.metrics import METRIC_NAMES
from gateway.panel.server import PanelServer
from gateway.sim.faults import Fault, FaultMode
from gateway.sim.signals import Constant
from tests.ops.conftest import SITE, Broker, Live, Scrape, start_live, until
from tests.panel.conftest import FakeBackend, panel_settings

SUFFIXES = ("", "_total", "_sum", "_count", "_bucket", "_info")
UPLINK_ONLY = tuple(n for n in METRIC_NAMES
                    if n.startswith(("roomwarden_uplink_", "roomwarden_outbox_"))
                    and n != "roomwarden_uplink_configured")


def exposed(scrape: Scrape) -> set[str]:
    names = {name for name, _ in scrape.samples}
    return {m for m in METRIC_NAMES if any(m + s in names for s in SUFFIXES)}


def device_counts(live: Live) -> dict[str, tuple[int, int]]:
    return {d: (h.polls, h.failures) for loop in live.gateway.bus_loops
            for d, h in loop.stats.device_health.items()}


async def test_a_scrape_agrees_with_the_gateway(live: Live) -> None:
    gw = live.gateway
    evaluations_before, polls_before = gw.evaluations, device_counts(live)
    alarms_before = len(gw.core.alarms.active())
    scrape = await live.scrape()
    evaluations_after, polls_after = gw.evaluations, device_counts(live)
    alarms_after = len(gw.core.alarms.active())

    assert scrape.content_type.startswith("text/plain; version=0.0.4")
    # every simulated device answers, and the gateway says so
    assert scrape.value("roomwarden_devices_online") == len(live.site.devices()) == 5
    assert scrape.value("roomwarden_devices") == 5
    for loop in gw.bus_loops:
        bus = loop.bus_id
        polls = 0.0
        for device in loop.stats.device_health:
            value = scrape.value("roomwarden_device_polls_total", bus=bus, device=device)
            assert polls_before[device][0] <= value <= polls_after[device][0]
            assert scrape.value("roomwarden_device_online", bus=bus, device=device) == 1
            assert scrape.value("roomwarden_device_consecutive_failures", bus=bus,
                                device=device) == 0
            polls += value
        # one snapshot: the bus's poll cycles are exactly its devices' polls
        assert scrape.value("roomwarden_bus_poll_cycles_total", bus=bus) == polls
        assert scrape.value("roomwarden_bus_poll_seconds_count", bus=bus) == polls
        assert scrape.value("roomwarden_bus_poll_seconds_sum", bus=bus) > 0
        assert scrape.value("roomwarden_bus_devices_online", bus=bus) == len(
            loop.stats.device_health)
        assert scrape.value("roomwarden_bus_link_open", bus=bus) == 1
        assert scrape.value("roomwarden_bus_requests_total", bus=bus) >= polls
        assert scrape.value("roomwarden_bus_progress_age_seconds", bus=bus) < scrape.value(
            "roomwarden_bus_stall_limit_seconds", bus=bus)

    evaluations = scrape.value("roomwarden_rule_evaluations_total")
    assert evaluations_before <= evaluations <= evaluations_after and evaluations > 0
    assert scrape.value("roomwarden_rule_evaluation_seconds_count") == evaluations
    assert 0 < scrape.value("roomwarden_rule_evaluation_last_seconds") <= scrape.value(
        "roomwarden_rule_evaluation_seconds_sum")

    active = scrape.all("roomwarden_alarms_active")
    assert len(active) == 4 * len(ALARM_STATES)  # every severity × state, zeros included
    assert sum(active.values()) in (alarms_before, alarms_after)

    assert scrape.value("roomwarden_config_info", version=str(gw.config_version),
                        sha256=gw.config_sha256) == 1
    assert len(gw.config_sha256) == 64
    [(build, _)] = scrape.all("roomwarden_build_info").items()
    assert dict(build)["version"] == __version__
    assert scrape.value("roomwarden_gateway_info", gateway="gw-ops-test", site="ops-lab") == 1
    assert scrape.value("roomwarden_outputs") == 2
    assert scrape.value("roomwarden_outputs_failed") == 0
    assert scrape.value("roomwarden_output_failed", output="siren-tx", role="siren") == 0
    assert scrape.value("roomwarden_uplink_configured") == 0
    assert scrape.value("roomwarden_health_status", check="overall", status="ok") == 1
    assert scrape.value("roomwarden_health_status", check="overall", status="failing") == 0
    assert scrape.value("process_start_time_seconds") > 0

    # without an uplink, everything else is there; every family documented
    assert exposed(scrape) == set(METRIC_NAMES) - set(UPLINK_ONLY)
    for name, family in scrape.families.items():
        assert name.startswith(("roomwarden_", "process_", "python_")), name
        assert family.documentation, name


async def test_a_silent_device_counts_failures_and_goes_offline(live: Live) -> None:
    first = await live.scrape()
    failures_before = first.value("roomwarden_device_poll_failures_total", bus="tcp-env",
                                  device="th-1")

    live.site.set_fault("th-1", Fault(mode=FaultMode.NO_REPLY))
    await until(lambda: live.device_online("th-1") is False, "th-1 offline")
    scrape = await live.scrape()
    failures = scrape.value("roomwarden_device_poll_failures_total", bus="tcp-env",
                            device="th-1")
    assert failures >= failures_before + 2  # offline_after: 2
    assert scrape.value("roomwarden_device_consecutive_failures", bus="tcp-env",
                        device="th-1") >= 2
    assert scrape.value("roomwarden_device_online", bus="tcp-env", device="th-1") == 0
    assert scrape.value("roomwarden_device_online", bus="tcp-env", device="smoke-1") == 1
    assert scrape.value("roomwarden_bus_devices_online", bus="tcp-env") == 3
    assert scrape.value("roomwarden_devices_online") == 4
    assert scrape.value("roomwarden_health_status", check="buses", status="degraded") == 1

    live.site.set_fault("th-1", Fault())
    await until(lambda: live.device_online("th-1") is True, "th-1 back online")
    scrape = await live.scrape()
    assert scrape.value("roomwarden_device_online", bus="tcp-env", device="th-1") == 1
    assert scrape.value("roomwarden_devices_online") == 5
    assert scrape.value("roomwarden_device_poll_failures_total", bus="tcp-env",
                        device="th-1") >= failures  # a counter never goes back


async def test_an_alarm_shows_in_active_alarms_by_severity(live: Live) -> None:
    gw = live.gateway

    def smoke_alarm() -> bool:
        return any(v.key.rule == "fire.smoke_detector" and v.key.subject == "smoke-1.alarm"
                   for v in gw.core.alarms.active())

    assert not smoke_alarm()
    quiet = await live.scrape()
    live.site.set_signal("smoke-1.alarm", Constant(value=True))
    await until(smoke_alarm, "the smoke alarm")
    scrape = await live.scrape()
    major = gw.core.alarms.active()
    expected = sum(1 for v in major
                   if v.severity.value == "major" and v.state.value == "active_unacknowledged")
    value = scrape.value("roomwarden_alarms_active", severity="major",
                         state="active_unacknowledged")
    assert value == expected >= 1
    assert value == quiet.value("roomwarden_alarms_active", severity="major",
                                state="active_unacknowledged") + 1


async def test_uplink_figures_from_a_real_broker(tmp_path: Path, broker: Broker) -> None:
    running = start_live(tmp_path, uplink_port=broker.port)
    live = await anext(running)
    try:
        uplink = live.gateway.uplink
        assert uplink is not None
        await until(lambda: uplink.status().connected and uplink.status().latency_count > 0,
                    "the uplink connected and a PUBACK in")
        before = uplink.status()
        scrape = await live.scrape()
        after = uplink.status()
        assert exposed(scrape) == set(METRIC_NAMES)
        assert scrape.value("roomwarden_uplink_configured") == 1
        assert scrape.value("roomwarden_uplink_connected") == 1
        assert scrape.value("roomwarden_uplink_connects_total") == 1
        published = scrape.value("roomwarden_uplink_published_total")
        assert before.published <= published <= after.published and published > 0
        # the publish latency histogram: cumulative buckets, +Inf = count
        buckets = sorted(((float(dict(labels)["le"]), v) for labels, v in
                          scrape.all("roomwarden_uplink_publish_latency_seconds_bucket").items()),
                         key=lambda b: b[0])
        assert buckets[-1][0] == float("inf")
        assert [v for _, v in buckets] == sorted(v for _, v in buckets)
        count = scrape.value("roomwarden_uplink_publish_latency_seconds_count")
        assert buckets[-1][1] == count and before.latency_count <= count <= after.latency_count
        assert count > 0 and scrape.value("roomwarden_uplink_publish_latency_seconds_sum") > 0
        assert scrape.value("roomwarden_outbox_budget_bytes") == before.outbox.budget
        for kind in MessageKind:
            assert scrape.value("roomwarden_outbox_dropped_total", kind=kind.value) == 0
        status, body = await live.healthz()
        assert (status, body["checks"]["uplink"]["status"]) == (200, "ok")

        broker.stop()
        await until(lambda: not uplink.status().connected, "the uplink to notice")
        scrape = await live.scrape()
        assert scrape.value("roomwarden_uplink_connected") == 0
        status, body = await live.healthz()
        assert (status, body["status"], body["checks"]["uplink"]["status"]) == (
            200, "degraded", "degraded")
    finally:
        await running.aclose()


# --- who gets /metrics ------------------------------------------------------------------------


@pytest.fixture
async def idle_gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    """A real gateway that is built but not run (nothing polled yet)."""
    gw = Gateway(load_gateway_config(SITE), state_dir=tmp_path / "state", clock=ManualClock())
    try:
        yield gw
    finally:
        gw.core.close()


async def _get(server: PanelServer, path: str) -> tuple[int, str, str]:
    port = await server.start()
    try:
        async with aiohttp.ClientSession() as client, client.get(
                f"http://127.0.0.1:{port}{path}") as r:
            return r.status, r.headers["Content-Type"], await r.text()
    finally:
        await server.stop()


async def test_metrics_only_for_allowed_networks_and_only_when_enabled(
        idle_gateway: Gateway) -> None:
    clock = idle_gateway.clock
    status, ctype, text = await _get(PanelServer(idle_gateway, panel_settings(), clock),
                                     "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    assert "roomwarden_devices_online 0.0" in text  # built, not yet polled

    elsewhere = panel_settings(metrics_allow=["10.0.0.0/8", "fc00::/7"])
    status, ctype, text = await _get(PanelServer(idle_gateway, elsewhere, clock), "/metrics")
    assert (status, ctype.split(";")[0]) == (403, "application/json")
    assert '"error":"forbidden"' in text

    off = panel_settings(metrics=False)
    status, _, text = await _get(PanelServer(idle_gateway, off, clock), "/metrics")
    assert status == 404 and '"error":"not_found"' in text


async def test_a_panel_without_a_gateway_has_no_metrics() -> None:
    server = PanelServer(FakeBackend(), panel_settings(), ManualClock())
    status, _, text = await _get(server, "/metrics")
    assert status == 404
    status, _, text = await _get(server, "/healthz")
    assert status == 200 and text == '{"ok":true,"status":"ok","checks":{}}'
