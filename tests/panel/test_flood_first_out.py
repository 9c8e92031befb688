"""Audit F7: during an alarm flood the panel names the alarm that started it. A real gateway
(the shipped telecom site simulated on loopback, `alarms.flood_count: 2`) and its panel over
plain HTTP: mains fails (the UPS goes on battery in the equipment room), then the battery
room's detectors stop answering. Before, /api/state carried only each room's first-out, so
both rooms' first alarms read FIRST OUT alike and nothing said which one began the flood."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.sim.faults import Fault, FaultMode
from gateway.sim.signals import Constant
from tests.helpers import until
from tests.panel.live import Live, live_panel

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"
UPS = ("power.ups_on_battery", "ups-tx-01.status.utility_fail")
OFFLINE = "sensor_health.device_offline"
BATTERY_ROOM = ("h2-batt-01", "bm-batt-01")


def flood_site(data: dict[str, Any]) -> None:
    """A flood at the third activation within 10 minutes; the battery room's detectors polled
    every second (their "offline" comes after three missed polls)."""
    data["alarms"] = {"flood_count": 2, "flood_window": "10m"}
    for device in data["devices"]:
        if device["id"] in BATTERY_ROOM:
            device["poll_interval"] = "1s"


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    async with live_panel(SITE, tmp_path, uplink=False, change=flood_site) as running:
        yield running


async def state(client: aiohttp.ClientSession) -> dict[str, Any]:
    async with client.get("/api/state") as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


def keyed(body: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(a["rule"], a["subject"]): a for a in body["alarms"]}


@pytest.mark.slow
async def test_api_state_names_the_flood_first_out_and_marks_only_it(live: Live) -> None:
    alarms = live.gateway.core.alarms
    async with aiohttp.ClientSession(base_url=live.url) as client:
        await until(lambda: live.gateway._evaluated(), 40, "the gateway's first evaluation")
        assert (await state(client))["alarms"] == []

        # mains fails: the UPS goes on battery — one alarm, no flood, nothing marked as one
        live.site.set_signal(UPS[1], Constant(value=True))
        await until(lambda: any(a.key == UPS for a in alarms.active()), 30, "the UPS alarm")
        quiet = await state(client)
        assert quiet["health"]["flood"] is False and quiet.get("flood") is None
        assert keyed(quiet)[UPS]["first_out"] is True
        assert [a for a in quiet["alarms"] if a.get("flood_first_out")] == []

        # … then the battery room's detectors stop answering: a flood, begun by the UPS
        for device in BATTERY_ROOM:
            live.site.set_fault(device, Fault(mode=FaultMode.NO_REPLY))
        await until(lambda: alarms.flood.active, 60, "the flood")
        await until(lambda: {(OFFLINE, d) for d in BATTERY_ROOM}
                    <= {a.key for a in alarms.active()}, 60, "both detectors offline")
        body = await state(client)

    shown = keyed(body)
    assert body["health"]["flood"] is True
    # each room's first alarm is still its room's first-out …
    assert sum(a["first_out"] for a in body["alarms"]) >= 2, body["alarms"]
    # … and only the alarm that started the flood is marked as the flood's first-out
    assert [(a["rule"], a["subject"]) for a in body["alarms"]
            if a.get("flood_first_out")] == [UPS], body["alarms"]
    assert shown[UPS]["first_out"] is True
    ups = alarms.get(UPS)
    flood = body.get("flood")
    assert flood is not None, "/api/state does not name the flood"
    assert flood["since_ns"] == alarms.flood.since_ns and flood["activations"] >= 3
    assert flood["first_out"] == {
        "rule": UPS[0], "subject": UPS[1], "title": ups.title, "room": "tx-3f",
        "room_name": "3F transmission equipment room (3楼传输机房)",
        "activated_ns": ups.activated_ns, "state": "active_unacknowledged"}
    assert ups.activated_ns is not None and ups.activated_ns < flood["since_ns"]
