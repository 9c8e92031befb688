"""`POST /api/outputs/reset` on the whole gateway: the shipped lithium ESS site with its devices
simulated on Modbus TCP (loopback), the daemon (bus loops, rules, alarms, output driver, panel)
and plain HTTP. After a real off-gas alarm cleared, the ESS's charge inhibit
(`restore_on_clear: false`) stays on and `/api/state` says it is held; a logged-in user resets
it (journalled with the user and the note) and the coil drops; the refusals are the panel's
(401 without a login, 415 without JSON, 409 with the reason for an unknown or not-held
output)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.actions.planner import OutputPlan
from gateway.alarms.events import OUTPUT_RULE
from gateway.field.sample import Value
from gateway.sim.signals import Constant
from tests.helpers import until
from tests.panel.conftest import JSON
from tests.panel.live import Live, live_panel

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "datacenter_lithium_room.yaml"
INHIBIT, COIL = "charge-inhibit-ess", "do-ess-01.do5"


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    async with live_panel(SITE, tmp_path, uplink=False) as running:
        yield running


async def post(client: aiohttp.ClientSession, path: str, body: Any,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = body if isinstance(body, str) else json.dumps(body)
    async with client.post(path, data=data, headers=JSON if headers is None else headers) as r:
        return r.status, await r.json()


async def output(client: aiohttp.ClientSession) -> dict[str, Any]:
    async with client.get("/api/state") as r:
        state = await r.json()
    found: dict[str, Any] = next(o for o in state["health"]["outputs"] if o["id"] == INHIBIT)
    return found


@pytest.mark.slow
async def test_a_logged_in_user_resets_the_held_charge_inhibit(live: Live) -> None:
    def coil() -> Value:
        return live.site.read_point(COIL)

    def planner() -> OutputPlan:
        return live.gateway.core.planner.state[INHIBIT]

    async with aiohttp.ClientSession(base_url=live.url,
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        status, body = await post(client, "/api/outputs/reset", {"output": INHIBIT})
        assert status == 401 and body["error"] == "not_logged_in"
        assert (await post(client, "/api/login", {"user": "demo", "password": "demo"}))[0] == 200
        status, body = await post(client, "/api/outputs/reset", {"output": INHIBIT})
        assert status == 409 and f"output {INHIBIT} is not held until reset" in body["message"]

        live.site.set_signal("offgas-ess-01.co", Constant(value=120.0))
        await until(lambda: coil() is True, 20, "the charge inhibit on")
        live.site.set_signal("offgas-ess-01.co", Constant(value=0.0))
        await until(lambda: planner().reasons == ["held until reset"], 20,
                    "the off-gas alarm cleared, the hold left")
        shown = await output(client)
        assert shown["held"] is True and shown["on"] is True and coil() is True

        status, body = await post(client, "/api/outputs/reset", {"output": "nowhere"})
        assert status == 409 and "unknown output 'nowhere'" in body["message"]
        status, body = await post(client, "/api/outputs/reset", f'{{"output": "{INHIBIT}"}}',
                                  headers={"Content-Type": "text/plain"})
        assert status == 415
        assert coil() is True and planner().held_by_reset

        status, body = await post(client, "/api/outputs/reset",
                                  {"output": INHIBIT, "note": "cells checked"})
        assert status == 200 and body == {"ok": True, "note": f"output {INHIBIT} released"}
        assert not live.gateway.core.wanted[INHIBIT], "re-planned within the request"
        await until(lambda: coil() is False, 10, "the charge inhibit released")
        shown = await output(client)
        assert shown["held"] is False and shown["on"] is False
        events = [e for e in live.gateway.core.alarms.events_since(0) if e.rule == OUTPUT_RULE]
        assert [(e.actor, e.note) for e in events] == [
            ("system", events[0].note), ("demo", "reset: cells checked")]
        assert (events[0].note or "").startswith("held until reset")

        async with client.get("/api/events", params={"last": "1h", "actor": "demo"}) as r:
            listed = (await r.json())["events"]
        assert [(e["rule"], e["subject"], e["note"]) for e in listed] == [
            (OUTPUT_RULE, INHIBIT, "reset: cells checked")]
