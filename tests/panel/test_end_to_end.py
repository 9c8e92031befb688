"""The whole gateway behind a real browser: the simulated equipment room, the daemon (bus loops,
rules, alarms, output driver, panel) and Debian's Chromium.

Log in, see an alarm appear, acknowledge it, see the siren coil drop on the simulated relay
module while the strobe stays on.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.config.loader import load_gateway_config
from gateway.daemon import Gateway
from gateway.demo import with_demo_user
from gateway.sim.signals import Constant
from gateway.sim.site import SimulatedSite
from tests import shipped
from tests.helpers import until
from tests.panel.live import Live, live_panel
from tests.panel.test_browser import ARGS, CHROMIUM

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"
SIREN, STROBE = "do-tx-01.do1", "do-tx-01.do2"

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} is not installed (apt install chromium)"
)

if os.access(CHROMIUM, os.X_OK):
    from playwright.async_api import async_playwright, expect


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    async with live_panel(SITE, tmp_path) as running:
        yield running


async def coil(site: SimulatedSite, point: str, value: bool, seconds: float = 8.0) -> None:
    """Wait until the simulated relay module's coil reads `value`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while site.read_point(point) is not value:
        assert loop.time() < deadline, f"{point} never became {value}"
        await asyncio.sleep(0.05)


async def test_alarm_appears_is_acknowledged_and_the_siren_drops(live: Live,
                                                                 tmp_path: Path) -> None:
    await coil(live.site, SIREN, False)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 390, "height": 844})
            await page.goto(live.url + "/")
            await expect(page.get_by_test_id("alarm")).to_have_count(0)

            # smoke in both detectors of the equipment room: a confirmed fire
            live.site.set_signal("smoke-tx-01.alarm", Constant(value=True))
            live.site.set_signal("smoke-tx-02.alarm", Constant(value=True))
            fire = page.locator('[data-testid="alarm"][data-rule="fire.smoke_coincidence"]')
            await expect(fire).to_be_visible(timeout=10_000)
            await expect(fire.get_by_test_id("alarm-state")).to_have_text(
                "active unacknowledged")
            await coil(live.site, SIREN, True)
            await coil(live.site, STROBE, True)
            # issue 14: the card names the room and says the condition in words; every
            # active alarm of the fire fits this phone screen; the siren shows as sounding
            await expect(fire.get_by_test_id("alarm-room")).to_have_text(
                "3F transmission equipment room (3楼传输机房)")
            await expect(fire.get_by_test_id("alarm-value")).to_have_text(
                "2 devices with smoke on")
            smoke = page.locator('[data-testid="alarm"][data-rule="fire.smoke_detector"]')
            await expect(smoke.first.get_by_test_id("alarm-location")).to_contain_text("ceiling")
            sounding = page.locator('[data-testid="strip-output"][data-output-id="siren-3f"]')
            await expect(sounding).to_contain_text("SOUNDING", timeout=5_000)
            cards = page.get_by_test_id("alarm-list").get_by_test_id("alarm")
            for i in range(await cards.count()):
                box = await cards.nth(i).bounding_box()
                assert box is not None and box["y"] + box["height"] <= 844, (i, box)
            # what to do: one tap away on a phone, in the pack's words
            todo = fire.get_by_test_id("alarm-response")
            await expect(todo).to_be_visible()
            await expect(todo.get_by_test_id("alarm-response-text")).to_be_hidden()
            await todo.locator("summary").click()
            rule = shipped.packs()["fire"].rule("smoke_coincidence")
            assert rule is not None and rule.response
            await expect(todo.get_by_test_id("alarm-response-text")).to_have_text(rule.response)

            await fire.get_by_test_id("ack-button").click()
            await expect(page.get_by_test_id("login-dialog")).to_be_visible()
            await page.get_by_label("User").fill("demo")
            await page.get_by_label("Password").fill("demo")
            await page.get_by_test_id("login-submit").click()
            await expect(page.get_by_test_id("current-user")).to_have_text("Logged in: demo")
            await expect(fire.get_by_test_id("alarm-state")).to_have_text(
                "active acknowledged", timeout=5_000)
            await expect(fire.get_by_test_id("alarm-ack")).to_contain_text("Acknowledged by demo")

            await coil(live.site, SIREN, False)  # acknowledge silences the siren …
            assert live.site.read_point(STROBE) is True  # … the strobe stays while active
            siren = page.locator('[data-testid="output"]').filter(has_text="siren-3f")
            await expect(siren).to_contain_text("off", timeout=5_000)
            await expect(siren).to_contain_text("confirmed off")
            await expect(sounding).to_contain_text("silenced")

            # hot work in the battery room: the suppression is listed with who and why
            await page.get_by_test_id("suppress-open").click()
            await page.get_by_test_id("suppress-scope").fill("batt-3f")
            await page.get_by_test_id("suppress-minutes").fill("30")
            await page.get_by_test_id("suppress-reason").fill("hot work permit 42")
            await page.get_by_test_id("suppress-submit").click()
            listed = page.locator('[data-testid="suppression"][data-scope="batt-3f"]')
            await expect(listed).to_contain_text("hot work permit 42 (by demo", timeout=5_000)
            await page.screenshot(path=str(tmp_path / "end-to-end.png"), full_page=True)
        finally:
            await browser.close()

    # the acknowledge is journalled with the user who gave it
    events = live.gateway.core.alarms.events_since(0)
    acks = [e for e in events if e.rule == "fire.smoke_coincidence" and e.actor == "demo"]
    assert acks and acks[-1].state == "active_acknowledged"


async def test_a_taken_panel_port_does_not_stop_the_gateway(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with SimulatedSite(load_gateway_config(SITE)) as site:
            loaded = with_demo_user(load_gateway_config(site.write_config(tmp_path / "s.yaml")))
            gateway = Gateway(loaded, state_dir=tmp_path / "state", panel_port=port)
            task = asyncio.create_task(gateway.run())
            try:
                def tried_twice() -> bool:  # the panel failed, waited and failed again
                    return caplog.text.count("event=panel_start_failed") >= 2

                await until(lambda: tried_twice() or task.done(), 15,
                            "the panel's second failed start")
                await until(lambda: gateway.evaluations > 0 or task.done(), 15,
                            "a first evaluation")
                assert not task.done() and not gateway.panel_ready.is_set()
                assert gateway.latest.samples > 0  # polling goes on
                assert gateway.evaluations > 0  # and so do the rules
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
