"""Two gateways under one id (a copied config) are noticed centrally (the central audit: their
readings mixed in one series, the copy's alarm stayed active under the real gateway, and
nothing said why). Every state names its gateway process's start (`boot`): a restart changes it
once, a boot coming back means two processes."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import gateway.contract.wire as c
from gateway.ingest.gatewaywatch import BOOTS_KEPT, GatewayWatch
from gateway.ingest.metrics import IngestMetrics
from gateway.ingest.service import IngestService
from tests.fixtures.services import Broker, Victoria, wait_for
from tests.ingest.test_service import GW, SITE, Gateway, make_settings


@pytest.fixture
def gateway(broker: Broker) -> Iterator[Gateway]:
    publisher = Gateway(broker)
    yield publisher
    publisher.close()


def state(boot: int, ts: int | None = None) -> c.GatewayState:
    return c.GatewayState(site=SITE, gateway=GW, status="online", ts=ts or time.time_ns(),
                          boot=boot)


def metrics() -> IngestMetrics:
    return IngestMetrics(queue_depth=lambda: 0.0, parked=lambda: 0.0, connected=lambda: 1.0,
                         catalogs=lambda: 0.0)


def test_two_processes_under_one_id_are_logged_and_counted(
        tmp_path: Path, broker: Broker, victoria: Victoria, gateway: Gateway,
        caplog: pytest.LogCaptureFixture) -> None:
    service = IngestService(make_settings(tmp_path, broker, victoria))
    service.start()
    try:
        wait_for(lambda: bool(service.status()["subscribed"]), what="ingest subscribed")
        now = time.time_ns()
        topic = str(c.Topic(SITE, GW, c.Channel.STATE))
        with caplog.at_level(logging.ERROR, logger="roomwarden.ingest"):
            for i, boot in enumerate((100, 200, 100, 200)):  # two processes, in turn
                gateway.raw(topic, c.encode(state(boot, now + i * 10**9)))
            wait_for(lambda: service.status()["acked"] == 4, what="the states")
        text = service.metrics.exposition().decode()
        assert (f'roomwarden_ingest_gateway_id_conflicts_total{{gateway="{GW}",site="{SITE}"}}'
                " 2.0") in text
        lines = [r.getMessage() for r in caplog.records
                 if "event=gateway_id_conflict" in r.getMessage()]
        assert len(lines) == 1 and "give each its own gateway.id" in lines[0]  # a line a minute
    finally:
        service.stop()


@given(restarts=st.lists(st.integers(1, 2**40), min_size=1, max_size=BOOTS_KEPT, unique=True))
def test_restarts_are_no_conflict(restarts: list[int]) -> None:
    watch = GatewayWatch(metrics())
    for boot in restarts:
        for _ in range(2):  # each boot's states, repeated
            watch.observe(state(boot), retained=False, now_ns=time.time_ns())
    assert watch.conflicts == 0
    watch.observe(state(restarts[0]), retained=False, now_ns=time.time_ns())
    assert watch.conflicts == (1 if len(restarts) > 1 else 0)


def test_skew_lines_are_one_a_minute_per_gateway(caplog: pytest.LogCaptureFixture) -> None:
    """The project's RateLimitFilter, keyed by event and gateway (the skew itself varies)."""
    watch = GatewayWatch(metrics())
    now = time.time_ns()
    with caplog.at_level(logging.WARNING, logger="roomwarden.ingest"):
        for i in range(5):
            for gw in ("gw-a", "gw-b"):
                watch.observe(c.GatewayState(site=SITE, gateway=gw, status="online",
                                             ts=now + (200 + i) * 10**9), False, now)
    lines = [r.getMessage() for r in caplog.records if "gateway_clock_skew" in r.getMessage()]
    assert len(lines) == 2 and {"gateway=gw-a" in lines[0], "gateway=gw-a" in lines[1]} == {
        True, False}
