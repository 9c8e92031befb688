"""Shelving a live hydrogen alarm keeps the protection running, on the whole gateway (the
shipped telecom site simulated on loopback over Modbus, the daemon, its panel over plain HTTP,
a logged-in user): hydrogen at 30 % LEL in the battery room raises the warning and the alarm;
the operator acknowledges both and shelves both from the panel. Before, the shelved alarms
demanded nothing: the exhaust fan stopped and the charge inhibit lifted with hydrogen still
present. Now the siren stays silent (shelving hides annunciation) while the fan's and the
charge inhibit's coils at the simulated relay module stay on, and the panel's outputs table
says the fan runs for a shelved alarm. Unshelved while the gas is there, the alarm is
annunciated afresh and the siren sounds again; shelved again and the gas gone, fan and charge
inhibit go off as before, and the alarms return to normal at the unshelve.

The fan's `min_on: 5m` is set to 0 here: it would keep the fan on for five minutes after any
switch-off, shelf or not, so the test would wait five minutes to see what the shelf does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.ops.status_report import build_status_report
from gateway.ops.status_text import render_status
from gateway.sim.signals import Constant
from tests.helpers import until
from tests.panel.live import Live, live_panel
from tests.panel.test_live_alarm_actions import post

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"
H2_POINT = "h2-batt-01.h2"
H2_ALARM = {"rule": "explosion.h2_alarm", "subject": H2_POINT}
H2_WARNING = {"rule": "explosion.h2_warning", "subject": H2_POINT}
SIREN, FAN, INHIBIT = "do-tx-01.do1", "do-tx-01.do3", "do-tx-01.do4"
"""The relay module's coils. The fan is wired normally-closed (`on_value: false`): its coil
is False while the fan runs."""


def no_min_on(config: dict[str, Any]) -> None:
    for output in config["outputs"]:
        if output["id"] == "fan-batt-3f":
            output["min_on"] = "0s"


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    async with live_panel(SITE, tmp_path, uplink=False, change=no_min_on) as running:
        yield running


def fan_runs(live: Live) -> bool:
    return live.site.read_point(FAN) is False


async def outputs(client: aiohttp.ClientSession) -> dict[str, dict[str, Any]]:
    async with client.get("/api/state") as r:
        state = await r.json()
    return {o["id"]: o for o in state["health"]["outputs"]}


async def alarm_of(client: aiohttp.ClientSession, ref: dict[str, str]) -> dict[str, Any]:
    async with client.get("/api/state") as r:
        state = await r.json()
    return next(a for a in state["alarms"]
                if (a["rule"], a["subject"]) == (ref["rule"], ref["subject"]))


def state_of(live: Live, ref: dict[str, str]) -> str:
    return str(live.gateway.core.alarms.get((ref["rule"], ref["subject"])).state)


@pytest.mark.slow
async def test_a_shelved_hydrogen_alarm_keeps_the_fan_and_charge_inhibit_on(live: Live) -> None:
    async with aiohttp.ClientSession(base_url=live.url,
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        assert (await post(client, "/api/login", {"user": "demo", "password": "demo"}))[0] == 200
        live.site.set_signal(H2_POINT, Constant(value=30.0))
        await until(lambda: live.site.read_point(SIREN) is True, 30, "the siren")
        await until(lambda: fan_runs(live) and live.site.read_point(INHIBIT) is True, 30,
                    "fan and charge inhibit on")
        await until(lambda: state_of(live, H2_WARNING) == "active_unacknowledged", 30,
                    "the warning (5 s on-delay)")
        assert state_of(live, H2_ALARM) == "active_unacknowledged"

        # the operator acknowledges (the siren stops), then shelves both hydrogen alarms
        status, body = await post(client, "/api/alarms/acknowledge",
                                  {"alarms": [H2_ALARM, H2_WARNING]})
        assert status == 200, body
        await until(lambda: live.site.read_point(SIREN) is False, 30, "the siren silenced")
        for ref in (H2_ALARM, H2_WARNING):
            status, body = await post(client, "/api/alarms/shelve",
                                      {"alarm": ref, "minutes": 60, "reason": "drifting?"})
            assert status == 200, body
            assert state_of(live, ref) == "shelved"
        shelved = time.monotonic()

        # the alarms are hidden and silent; the protection runs on while the gas is there
        rounds = live.gateway.evaluations
        while live.gateway.evaluations < rounds + 3 or time.monotonic() < shelved + 3:
            # rounds of the core, writes and polls of the relay module (every 1 s)
            assert fan_runs(live), "the shelf stopped the exhaust fan"
            assert live.site.read_point(INHIBIT) is True, "the shelf lifted the charge inhibit"
            assert live.site.read_point(SIREN) is False, "a shelved alarm sounds nothing"
            await asyncio.sleep(0.05)
        fan = (await outputs(client))["fan-batt-3f"]
        assert fan["on"] is True
        assert f"{H2_ALARM['rule']}@{H2_POINT} (shelved: protective output stays on)" \
            in fan["reasons"], fan
        assert (await outputs(client))["siren-3f"]["on"] is False
        # the alarm's card says it still drives its outputs (its condition is active)
        assert (await alarm_of(client, H2_ALARM))["hidden"] == "active"
        # and the technician's `roomwarden status` (the report its control socket sends)
        lines = render_status(build_status_report(live.gateway), color=False).splitlines()
        assert any("shelved, active" in line and H2_ALARM["rule"] in line for line in lines), \
            lines
        at = next(i for i, line in enumerate(lines) if line.strip().startswith("fan-batt-3f"))
        assert "wanted on" in lines[at]
        assert lines[at + 1].strip() == (f"for {H2_ALARM['rule']}@{H2_POINT} (shelved: "
                                         "protective output stays on)"), lines

        # unshelved while the gas is there: annunciated afresh, the siren sounds again
        assert await post(client, "/api/alarms/unshelve", {"alarm": H2_ALARM}) == (
            200, {"ok": True})
        assert state_of(live, H2_ALARM) == "active_unacknowledged"
        await until(lambda: live.site.read_point(SIREN) is True, 30, "the siren again")
        assert (await post(client, "/api/alarms/acknowledge", {"alarms": [H2_ALARM]}))[0] == 200
        assert (await post(client, "/api/alarms/shelve",
                           {"alarm": H2_ALARM, "minutes": 60, "reason": "again"}))[0] == 200

        # the gas clears under the shelves: fan and charge inhibit go off, as before
        live.site.set_signal(H2_POINT, Constant(value=0.0))
        await until(lambda: not fan_runs(live) and live.site.read_point(INHIBIT) is False, 30,
                    "fan and charge inhibit off once the gas is gone")
        assert live.site.read_point(SIREN) is False
        assert not (await outputs(client))["fan-batt-3f"]["reasons"]
        assert (await alarm_of(client, H2_ALARM))["hidden"] is None
        for ref in (H2_ALARM, H2_WARNING):
            assert await post(client, "/api/alarms/unshelve", {"alarm": ref}) == (
                200, {"ok": True})
            assert state_of(live, ref) == "normal", "cleared under the shelf: normal"
        await asyncio.sleep(2.0)  # rounds and polls after the unshelve
        assert not fan_runs(live) and live.site.read_point(INHIBIT) is False
        assert live.site.read_point(SIREN) is False
