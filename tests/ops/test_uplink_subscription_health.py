"""A whole gateway whose broker refuses its `cmd` and `ack` subscriptions: /healthz, /metrics,
the panel and `roomwarden status` say "connected, not subscribed", naming each refused filter
and what does not arrive (operator commands, the ingest's acknowledgements), while telemetry
still goes out; the broker's rules mended and the broker restarted, the gateway subscribes at
the reconnect and every view is clean again. Real Mosquitto 2.0 with its dynamic-security
plugin (tests/fixtures/dynsec.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ops.status_report import build_status_report
from gateway.ops.status_text import render_status
from tests.fixtures.dynsec import DynsecBroker, running_dynsec
from tests.fixtures.services import Subscriber
from tests.ops.conftest import Live, start_live, until

PREFIX = "roomwarden/ops-lab/gw-ops-test/"
CMD, ACK = PREFIX + "cmd", PREFIX + "ack"


@pytest.fixture
def refusing(tmp_path: Path) -> Iterator[DynsecBroker]:
    yield from running_dynsec(tmp_path / "broker", [
        ("publishClientSend", "roomwarden/#"),
        ("subscribeLiteral", PREFIX + "config/set"),  # granted: the refusal is partial
        ("subscribeLiteral", PREFIX + "telemetry")])  # the test's subscriber


async def uplink_check(live: Live) -> dict[str, str]:
    status, body = await live.healthz()
    assert status == 200
    return dict(body["checks"]["uplink"])


async def test_connected_not_subscribed_is_degraded_everywhere_until_the_broker_grants(
        refusing: DynsecBroker, tmp_path: Path) -> None:
    sub = Subscriber(refusing.port, PREFIX + "telemetry")
    running = start_live(tmp_path, uplink_port=refusing.port)
    live = await anext(running)
    try:
        uplink = live.gateway.uplink
        assert uplink is not None
        await until(lambda: len(uplink.status().refused) == 2, "both refusals")
        check = await uplink_check(live)
        assert check["status"] == "degraded"
        assert check["detail"].startswith(
            f"connected, not subscribed: {CMD} refused (Not authorized), {ACK} refused (Not "
            "authorized) — no operator commands, no acknowledgements from the ingest reach "
            "the gateway; telemetry and alarms are still published"), check
        _, body = await live.healthz()
        assert body["status"] == "degraded" and body["service"] == "degraded"
        scrape = await live.scrape()
        assert scrape.value("roomwarden_health_status", check="uplink", status="degraded") == 1
        assert scrape.value("roomwarden_uplink_connected") == 1

        seen = len(sub.snapshot())  # the polls' telemetry keeps going out
        await until(lambda: len(sub.snapshot()) > seen, "telemetry while not subscribed")

        panel = live.gateway.panel_state().health.uplink
        assert panel.startswith(f"connected, not subscribed: {CMD} refused (Not authorized)")
        text = render_status(build_status_report(live.gateway), color=False)
        uplink_lines = text[text.index("Uplink:"):].splitlines()
        assert uplink_lines[0].startswith("Uplink: NOT SUBSCRIBED  outbox ")
        assert uplink_lines[1:4] == [
            f"  refused: {CMD} (Not authorized)", f"  refused: {ACK} (Not authorized)",
            "  no operator commands, no acknowledgements from the ingest reach the gateway"]

        refusing.stop()  # the rules mended in the plugin's file, the broker restarted
        refusing.allow_in_file("subscribeLiteral", CMD)
        refusing.allow_in_file("subscribeLiteral", ACK)
        refusing.start()
        await until(lambda: uplink.status().subscribed, "subscribed after the reconnect")
        check = await uplink_check(live)
        assert check["status"] == "ok" and check["detail"].startswith("connected; outbox"), check
        assert live.gateway.panel_state().health.uplink == "connected"
        text = render_status(build_status_report(live.gateway), color=False)
        assert text[text.index("Uplink:"):].startswith("Uplink: connected       outbox ")
        assert "refused" not in text
    finally:
        sub.close()
        await running.aclose()
