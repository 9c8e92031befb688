"""/healthz of a real gateway: ok → degraded → failing → ok as the simulator's devices fall
silent and come back, the rules stop, or a bus loop makes no progress."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
import yaml

from gateway.alarms.lifecycle import AlarmState
from gateway.clock import ManualClock
from gateway.config.loader import load_gateway_config
from gateway.daemon import Gateway
from gateway.ingest.service import IngestService
from gateway.ops import uplink_health
from gateway.ops.health import HealthMonitor, Level, monitor_for
from gateway.rules import conditions
from gateway.rules.faults import EVALUATION_FAILED_RULE
from gateway.sim.faults import Fault, FaultMode
from gateway.sim.site import SimulatedSite
from tests.fixtures.services import Broker, Victoria
from tests.ingest.test_service import make_settings
from tests.ops.conftest import SITE, Live, start_live, stop, until


async def _status(live: Live) -> str:
    return str((await live.healthz())[1]["status"])


@pytest.mark.slow
async def test_healthz_goes_degraded_failing_and_back_to_ok(live: Live) -> None:
    status, body = await live.healthz()
    assert (status, body["ok"], body["status"]) == (200, True, "ok")
    assert {name: c["status"] for name, c in body["checks"].items()} == {
        "buses": "ok", "rules": "ok", "rule_parameters": "ok", "clock": "ok", "outputs": "ok",
        "journal": "ok", "event_loop": "ok", "uplink": "ok", "config": "ok"}
    assert "5/5 devices online" in body["checks"]["buses"]["detail"]

    # one device of a bus silent: degraded, still 200
    live.site.set_fault("th-1", Fault(mode=FaultMode.NO_REPLY))
    await until(lambda: live.device_online("th-1") is False, "th-1 offline")
    status, body = await live.healthz()
    assert (status, body["ok"], body["status"]) == (200, True, "degraded")
    assert body["checks"]["buses"]["status"] == "degraded"
    assert "th-1" in body["checks"]["buses"]["detail"]

    # the only device of tcp-meter silent: nothing answers on that link: failing, 503
    live.site.set_fault("meter-1", Fault(mode=FaultMode.NO_REPLY))
    await until(lambda: live.device_online("meter-1") is False, "meter-1 offline")
    status, body = await live.healthz()
    assert (status, body["ok"], body["status"]) == (503, False, "failing")
    assert body["checks"]["buses"]["status"] == "failing"
    assert "tcp-meter: no device answers" in body["checks"]["buses"]["detail"]
    scrape = await live.scrape()  # /metrics keeps answering (and says the same)
    assert scrape.value("roomwarden_health_status", check="buses", status="failing") == 1

    live.site.set_fault("th-1", Fault())
    live.site.set_fault("meter-1", Fault())
    await until(live.all_online, "every device back online")
    status, body = await live.healthz()
    assert (status, body["status"]) == (200, "ok")


async def test_healthz_fails_while_the_rules_are_not_evaluated(
        live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    gw = live.gateway
    monitor = monitor_for(gw)
    assert live.gateway.panel is not None and live.gateway.panel.server.health is monitor
    monitor.evaluator_stall_after = 0.5  # instead of 10 s, to keep the test short
    assert await _status(live) == "ok"

    def broken(*_args: object) -> list[object]:
        raise RuntimeError("a rule bug")

    monkeypatch.setattr(gw.core, "step", broken)  # every round raises: nothing completes
    stuck = gw.evaluations
    await _wait_status(live, "failing")
    assert gw.evaluations == stuck
    status, body = await live.healthz()
    assert status == 503 and body["checks"]["rules"]["status"] == "failing"
    assert "no rule evaluation for" in body["checks"]["rules"]["detail"]

    monkeypatch.undo()
    await _wait_status(live, "ok")
    assert gw.evaluations > stuck


async def _wait_status(live: Live, wanted: str, seconds: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (status := await _status(live)) != wanted:
        assert loop.time() < deadline, f"/healthz stayed {status}, never {wanted}"
        await asyncio.sleep(0.1)


async def test_a_bus_loop_without_progress_and_rules_never_run_are_failing(
        tmp_path: Path) -> None:
    """A gateway built but never run, on a manual clock: nothing makes progress."""
    clock = ManualClock()
    gw = Gateway(load_gateway_config(SITE), state_dir=tmp_path / "state", clock=clock,
                 panel_port=0)
    try:
        monitor = HealthMonitor(gw)
        report = monitor.check()
        assert report.status is Level.OK  # nothing polled yet is not a fault
        assert report.checks["buses"].detail == "2 buses polling; 0/5 devices online"

        limit = max(loop.stall_limit for loop in gw.bus_loops)
        clock.advance(limit + 1)
        report = monitor.check()
        assert report.status is Level.FAILING and not report.ok
        assert report.checks["buses"].status is Level.FAILING
        for loop in gw.bus_loops:
            assert f"{loop.bus_id} stalled" in report.checks["buses"].detail
        assert report.checks["rules"].status is Level.FAILING  # never evaluated, > 10 s

        assert gw.panel is not None  # and the panel says so over HTTP
        port = await gw.panel.start()
        try:
            async with aiohttp.ClientSession() as client, client.get(
                    f"http://127.0.0.1:{port}/healthz") as r:
                body = await r.json()
                assert (r.status, body["status"], body["ok"]) == (503, "failing", False)
        finally:
            await gw.panel.stop()

        gw.evaluate_once()  # a round of the rules: that check recovers, the buses do not
        report = monitor.check()
        assert report.checks["rules"].status is Level.OK
        assert report.checks["buses"].status is Level.FAILING
    finally:
        gw.core.close()


async def test_a_bus_whose_port_is_missing_is_failing(tmp_path: Path) -> None:
    """An RS-485 adapter that is not plugged in: nothing on that bus can answer."""
    async with SimulatedSite(load_gateway_config(SITE)) as site:
        data = site.rewritten_config()
        data["buses"].append({"id": "rs485-gone", "type": "modbus_rtu", "timeout": "200ms",
                              "port": str(tmp_path / "no-such-tty"),
                              "failure": {"offline_after": 2, "backoff_max": "500ms"}})
        data["devices"].append({"id": "th-9", "bus": "rs485-gone", "unit": 9, "room": "tx",
                                "profile": "generic_th_sensor", "poll_interval": "200ms"})
        path = tmp_path / "gone.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        gw = Gateway(load_gateway_config(path), state_dir=tmp_path / "state", panel_port=0)
        task = asyncio.create_task(gw.run())
        try:
            await asyncio.wait_for(gw.panel_ready.wait(), 10)
            live = Live(site, gw, f"http://127.0.0.1:{gw.panel_port}")
            await until(lambda: live.device_online("th-9") is False
                        and live.device_online("meter-1") is True, "th-9 offline")
            status, body = await live.healthz()
            assert (status, body["status"]) == (503, "failing")
            detail = body["checks"]["buses"]["detail"]
            assert "rs485-gone: link not open" in detail and "no-such-tty" in detail
            scrape = await live.scrape()
            assert scrape.value("roomwarden_bus_devices_online", bus="rs485-gone") == 0
            assert scrape.value("roomwarden_device_poll_failures_total", bus="rs485-gone",
                                device="th-9") >= 2
        finally:
            await stop(task)


async def test_a_rule_binding_that_raises_degrades_the_rules_and_is_an_alarm(
        live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in a derived value (gateway.rules.faults): the bindings that use it fail alone —
    /healthz says which, an alarm of its own is raised, the other rules go on — and all is
    well again when they evaluate."""
    gw = live.gateway
    assert await _status(live) == "ok"

    def broken(*_args: object) -> float:
        raise ZeroDivisionError("a bug in the dew point")

    monkeypatch.setattr(conditions, "dew_point", broken)
    gw.core.engine.refresh()  # every binding at the next round (new samples would too)
    gw.evaluator.owe()
    await _wait_status(live, "degraded")
    status, body = await live.healthz()
    rules = body["checks"]["rules"]
    assert status == 200 and rules["status"] == "degraded"
    assert "environment.dew_point_allowable@th-1 (ZeroDivisionError: a bug in the dew point)" \
        in rules["detail"]
    failing = [v for v in gw.core.alarms.active() if v.key.rule == EVALUATION_FAILED_RULE]
    assert "environment.dew_point_allowable@th-1" in {v.key.subject for v in failing}
    evaluated = gw.core.engine.evaluated
    await until(lambda: gw.core.engine.evaluated > evaluated + 5, "the other rules go on")

    monkeypatch.undo()
    await _wait_status(live, "ok")
    assert {v.state for v in gw.core.alarms.active() if v.key.rule == EVALUATION_FAILED_RULE
            } == {AlarmState.RETURNED_UNACKNOWLEDGED}


async def test_alarm_events_the_journal_could_not_write_degrade_the_journal_check(
        live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    """The storage audit filled the disk: /healthz said ok while the journal could not write
    (an acknowledgement was lost at the restart). While events wait to be written, the journal
    check says so; it is ok again once they are written (the writer retries)."""
    import sqlite3

    from gateway.alarms.events import EventKind
    from gateway.alarms.journal import Journal

    gw = live.gateway
    assert await _status(live) == "ok"

    def disk_full(*_args: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Journal, "_write", disk_full)
    gw.core.alarms.system_event(EventKind.CONFIG, "$config", "v9", "a test event")
    await _wait_status(live, "degraded")
    _, body = await live.healthz()
    assert "alarm journal: 1 event not yet written (database or disk is full)" in \
        body["checks"]["journal"]["detail"]
    monkeypatch.undo()
    await _wait_status(live, "ok")
    assert gw.core.journal.pending_events == 0


async def test_a_device_reading_only_in_part_degrades_the_buses(tmp_path: Path) -> None:
    clock = ManualClock()
    gw = Gateway(load_gateway_config(SITE), state_dir=tmp_path / "state", clock=clock,
                 panel_port=0)
    try:
        loop = next(b for b in gw.bus_loops if "th-1" in b.stats.device_health)
        health = loop.stats.device_health["th-1"]
        for _ in range(health.policy.offline_after):  # in a row, as a failing device's
            health.record_partial("exception 4 (server device failure)", clock.monotonic())
        assert health.online is True
        report = HealthMonitor(gw).check_buses()
        assert report.status is Level.DEGRADED
        assert (f"{loop.bus_id}: 1 reading only in part (th-1 (exception 4 (server device "
                "failure)))") in report.detail
        health.record_success(clock.monotonic())
        assert HealthMonitor(gw).check_buses().status is Level.OK
    finally:
        gw.core.close()


def test_a_clock_that_was_never_set_is_degraded() -> None:
    """A Pi before NTP (at 1970): its event times are wrong and the central ingest refuses
    them (gateway.ingest.timecheck) — the technician sees why on /healthz."""
    from gateway.clocksync import SET_FLOOR_NS
    from gateway.ops.health import Level, check_clock

    unset = check_clock(86_400 * 10**9)
    assert unset.status is Level.DEGRADED and "1970-01-02" in unset.detail
    assert "not set" in unset.detail and "check NTP" in unset.detail
    assert check_clock(SET_FLOOR_NS).status is Level.OK


async def test_a_connected_uplink_that_no_ingest_confirms_is_degraded(
        tmp_path: Path, broker: Broker, victoria: Victoria,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The upgrade audit: a gateway in `delivery: ingest` (the default) behind a broker with
    no RoomWarden ingest publishes, the broker acknowledges, nothing is ever confirmed — the
    outbox only grows — and /healthz said `uplink: ok`. Now degraded, naming why, until an
    ingest confirms (the two minutes shortened here)."""
    monkeypatch.setattr(uplink_health, "UNCONFIRMED_AFTER", 1.0)
    running = start_live(tmp_path, uplink_port=broker.port, ack_timeout="0.2s")
    live = await anext(running)
    try:
        async def uplink_check() -> dict[str, str]:
            return dict((await live.healthz())[1]["checks"]["uplink"])

        deadline = asyncio.get_running_loop().time() + 20
        while (check := await uplink_check())["status"] != "degraded":
            assert asyncio.get_running_loop().time() < deadline, check
            await asyncio.sleep(0.2)
        assert check["detail"].startswith("connected; the ingest has confirmed nothing for")
        assert "is the RoomWarden ingest running and subscribed?" in check["detail"]
        ingest = IngestService(make_settings(tmp_path, broker, victoria))
        ingest.start()
        try:
            deadline = asyncio.get_running_loop().time() + 20
            while (check := await uplink_check())["status"] != "ok":
                assert asyncio.get_running_loop().time() < deadline, check
                await asyncio.sleep(0.2)
            assert check["detail"].startswith("connected; outbox")
        finally:
            ingest.stop()
    finally:
        await running.aclose()

