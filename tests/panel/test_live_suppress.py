"""The audit's suppression on the whole gateway (the shipped telecom site simulated on loopback,
the daemon, plain HTTP): `POST /api/suppress {"scope": "tx-3f", "minutes": 10080}` while a
confirmed fire nobody has acknowledged is on is a 409 naming the fire and saying to
acknowledge it first — nothing is suppressed and the strobe stays on; acknowledged, the room
is suppressed and the answer says how many alarms of the list it hides, and which."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway.sim.signals import Constant
from tests.helpers import until
from tests.panel.live import Live, live_panel
from tests.panel.test_live_alarm_actions import post

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"
STROBE = "do-tx-01.do2"
FIRE = ("fire.smoke_coincidence", "tx-3f")
SUPPRESS = {"scope": "tx-3f", "minutes": 10080, "reason": "hot work"}


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    async with live_panel(SITE, tmp_path, uplink=False) as running:
        yield running


@pytest.mark.slow
async def test_a_room_with_an_unacknowledged_fire_is_not_suppressed(live: Live) -> None:
    alarms = live.gateway.core.alarms
    async with aiohttp.ClientSession(base_url=live.url,
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        assert (await post(client, "/api/login", {"user": "demo", "password": "demo"}))[0] == 200
        for point in ("smoke-tx-01.alarm", "smoke-tx-02.alarm"):
            live.site.set_signal(point, Constant(value=True))
        await until(lambda: any((a.key.rule, a.key.subject) == FIRE for a in alarms.active()),
                    30, "the fire")
        await until(lambda: live.site.read_point(STROBE) is True, 30, "the strobe on")

        status, body = await post(client, "/api/suppress", SUPPRESS)
        assert status == 409, body
        assert "fire.smoke_coincidence@tx-3f" in body["message"]
        assert "acknowledge" in body["message"]
        assert alarms.suppressions() == []
        assert alarms.get(FIRE).state.value == "active_unacknowledged"
        assert live.site.read_point(STROBE) is True

        # seen and acknowledged, the room may be suppressed; the answer says what it hides
        async with client.get("/api/state") as r:
            shown = [{"rule": a["rule"], "subject": a["subject"]}
                     for a in (await r.json())["alarms"] if a["room"] == "tx-3f"]
        status, body = await post(client, "/api/alarms/acknowledge",
                                  {"alarms": shown, "skip_acknowledged": True})
        assert status == 200, body
        status, body = await post(client, "/api/suppress", SUPPRESS)
        assert status == 200, body
        assert body["covers"] == len(shown) and body["more"] == max(0, len(shown) - 20)
        assert {"rule": FIRE[0], "subject": FIRE[1]} in [
            {"rule": a["rule"], "subject": a["subject"]} for a in body["alarms"]]
        assert alarms.get(FIRE).state.value == "suppressed"
        await until(lambda: live.site.read_point(STROBE) is False, 30, "the strobe off")
