"""The panel's alarm routes on the whole gateway (the shipped telecom site simulated on
loopback, the daemon, plain HTTP): a latched confirmed fire whose smoke cleared says so in
/api/state and is reset from the panel (journalled as the user's acknowledge; the strobe drops);
an "acknowledge all" that skips the alarm another operator acknowledged meanwhile; unshelve
through the one operator-command service; /api/state's `evaluated` while starting."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.sim.signals import Constant
from tests import shipped
from tests.helpers import until
from tests.panel.conftest import JSON
from tests.panel.live import Live, live_panel

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"
STROBE = "do-tx-01.do2"
FIRE = {"rule": "fire.smoke_coincidence", "subject": "tx-3f"}
SMOKE_1 = {"rule": "fire.smoke_detector", "subject": "smoke-tx-01.alarm"}
SMOKE_2 = {"rule": "fire.smoke_detector", "subject": "smoke-tx-02.alarm"}


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    async with live_panel(SITE, tmp_path, uplink=False) as running:
        yield running


async def post(client: aiohttp.ClientSession, path: str, body: Any) -> tuple[int, Any]:
    async with client.post(path, data=json.dumps(body), headers=JSON) as r:
        return r.status, await r.json()


async def alarms(client: aiohttp.ClientSession) -> dict[tuple[str, str], dict[str, Any]]:
    async with client.get("/api/state") as r:
        state = await r.json()
    return {(a["rule"], a["subject"]): a for a in state["alarms"]}


def key(ref: dict[str, str]) -> tuple[str, str]:
    return ref["rule"], ref["subject"]


@pytest.mark.slow
async def test_latched_fire_reset_ack_all_skips_and_unshelve(live: Live) -> None:
    seen: list[bool] = []
    async with aiohttp.ClientSession(base_url=live.url,
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        # starting: the alarms are not known until every device was polled and evaluated
        async with client.get("/api/state") as r:
            seen.append((await r.json())["evaluated"])
        assert seen == [False]
        def polled() -> bool:
            return all(h.polls for loop in live.gateway.bus_loops
                       for h in loop.stats.device_health.values())

        assert not polled()

        async def evaluated() -> bool:
            async with client.get("/api/state") as r:
                return bool((await r.json())["evaluated"])

        for _ in range(600):
            if await evaluated():
                break
            await asyncio.sleep(0.05)
        assert polled()  # said once every device has been polled (and evaluated)

        assert (await post(client, "/api/login", {"user": "demo", "password": "demo"}))[0] == 200
        for point in ("smoke-tx-01.alarm", "smoke-tx-02.alarm"):
            live.site.set_signal(point, Constant(value=True))
        await until(lambda: len([a for a in live.gateway.core.alarms.active()
                                 if a.key.rule.startswith("fire.smoke")]) == 3, 30, "the fire")
        now = await alarms(client)
        assert now[key(FIRE)]["condition"] is True and now[key(FIRE)]["latched"] is False
        # the reset is refused while the smoke is there
        status, body = await post(client, "/api/alarms/reset", {"alarm": FIRE})
        assert status == 409 and "still present" in body["message"]

        # another operator acknowledges one smoke detector; "acknowledge all" of the three
        # this operator saw acknowledges the other two and names the one skipped
        live.gateway.commands.acknowledge(
            [live.gateway.core.alarms.get(key(SMOKE_1)).key], "bob", None)  # type: ignore[list-item]
        refs = [FIRE, SMOKE_1, SMOKE_2]
        status, body = await post(client, "/api/alarms/acknowledge", {"alarms": refs})
        assert status == 409  # all or none stays as it was
        status, body = await post(client, "/api/alarms/acknowledge",
                                  {"alarms": refs, "skip_acknowledged": True})
        assert status == 200, body
        assert body["changed"] == 2
        assert [(s["subject"], s["acked_by"]) for s in body["skipped"]] == [
            ("smoke-tx-01.alarm", "bob")]

        # the smoke clears: the fire stays, latched, waiting for a reset; the strobe stays on
        for point in ("smoke-tx-01.alarm", "smoke-tx-02.alarm"):
            live.site.set_signal(point, Constant(value=False))
        await until(lambda: not live.gateway.core.alarms.get(key(FIRE)).condition, 30)
        now = await alarms(client)
        fire = now[key(FIRE)]
        assert (fire["state"], fire["condition"], fire["latched"]) == (
            "active_acknowledged", False, True)
        assert live.site.read_point(STROBE) is True
        assert await post(client, "/api/alarms/reset", {"alarm": FIRE}) == (
            200, {"ok": True, "changed": 1})
        assert key(FIRE) not in await alarms(client)
        await until(lambda: live.site.read_point(STROBE) is False, 30, "the strobe off")
        events = live.gateway.core.alarms.events_since(0)
        reset = [e for e in events if (e.rule, e.subject) == key(FIRE)][-1]
        assert (reset.actor, reset.previous_state, reset.state) == (
            "demo", "active_acknowledged", "normal")
        # a second reset (another operator's page) is no error: nothing was left to reset
        assert await post(client, "/api/alarms/reset", {"alarm": FIRE}) == (
            200, {"ok": True, "changed": 0})

        # shelve and unshelve through the same service, journalled with the user; the fire's
        # condition falls with either detector, so first see this one clear (on a loaded
        # machine its poll may not have read the clear yet: set again, it never fell)
        await until(lambda: not live.gateway.core.alarms.get(key(SMOKE_2)).condition, 30,
                    "smoke 2 clear")
        live.site.set_signal("smoke-tx-02.alarm", Constant(value=True))
        await until(lambda: live.gateway.core.alarms.get(key(SMOKE_2)).state.value
                    == "active_unacknowledged", 30, "smoke again")  # (a loaded machine)
        assert (await post(client, "/api/alarms/shelve",
                           {"alarm": SMOKE_2, "minutes": 30, "reason": "test"}))[0] == 200
        status, body = await post(client, "/api/alarms/shelve",
                                  {"alarm": SMOKE_2, "minutes": 30, "reason": "test"})
        assert status == 409 and body["message"].endswith("; unshelve it first")
        assert "Asia/Shanghai" in body["message"]  # the site's zone, not UTC
        assert await post(client, "/api/alarms/unshelve", {"alarm": SMOKE_2}) == (
            200, {"ok": True})
        assert (await alarms(client))[key(SMOKE_2)]["state"] == "active_unacknowledged"
        last = live.gateway.core.alarms.events_since(0)[-1]
        assert (last.subject, last.actor, last.note) == ("smoke-tx-02.alarm", "demo",
                                                         "unshelved")


async def test_cards_say_what_to_do_the_sites_own_words_first(tmp_path: Path) -> None:
    """A real gateway on a site that writes its own response for the confirmed fire: the
    panel's fire alarm says the site's words, each detector's alarm its pack's."""
    config = yaml.safe_load(SITE.read_text())
    config["profiles_dir"] = str(SITE.parent / config.get("profiles_dir", "../hardware"))
    mine = "Call the guard room, ext. 2100; evacuate by stair B; meet the fire service at gate 1."
    config.setdefault("rules", {})["responses"] = {"fire.smoke_coincidence": mine}
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    smoke = shipped.packs()["fire"].rule("smoke_detector")
    assert smoke is not None and smoke.response
    async with live_panel(site, tmp_path, uplink=False) as live, aiohttp.ClientSession(
            base_url=live.url) as client:
        live.site.set_signal("smoke-tx-01.alarm", Constant(value=True))
        live.site.set_signal("smoke-tx-02.alarm", Constant(value=True))
        shown: dict[tuple[str, str], dict[str, Any]] = {}
        for _ in range(600):  # 30 s: slow, not never
            shown = await alarms(client)
            if key(FIRE) in shown and key(SMOKE_1) in shown:
                break
            await asyncio.sleep(0.05)
        assert shown[key(FIRE)]["response"] == mine
        assert shown[key(SMOKE_1)]["response"] == smoke.response
