"""The panel audit's findings, in a real headless Chromium against the real panel server and
its fake backend: a latched alarm's reset, the state tag and a cleared alarm's reading, an
"acknowledge all" or Acknowledge someone else beat, the order of unacknowledged alarms,
errors that stay in view, unshelve, one time zone, a 360 px phone, the starting gateway, a
session that ended."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.panel.views import AlarmRef, SuppressionView
from tests.panel.conftest import NOW_NS, PASSWORD, USER, Running, alarm, sample_state
from tests.panel.test_browser import CHROMIUM
from tests.panel.test_browser_console import PHONE, browser, confirmed_fire, fire_alarm, shot

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} is not installed (apt install chromium)"
)

if os.access(CHROMIUM, os.X_OK):
    from playwright.async_api import Browser, Page, expect

__all__ = ["browser"]

FIRE = "fire.smoke_coincidence"
SITE_TZ = "Asia/Shanghai"


def latched_fire() -> Any:
    """The confirmed fire acknowledged, its smoke gone: the coincidence latched (waiting for a
    reset), one detector returned (waiting for its acknowledgement)."""
    return sample_state([
        fire_alarm(rule=FIRE, subject="tx-3f", title="Fire confirmed", value=0,
                   limit="2 devices with smoke on", state="active_acknowledged",
                   condition=False, latched=True, acked_by="alice",
                   acked_ns=NOW_NS - 10**10, actions=["siren", "strobe"]),
        fire_alarm(rule="fire.smoke_detector", subject="smoke-1.alarm", severity="major",
                   title="Smoke detector in alarm", value=False, limit="smoke on",
                   state="returned_unacknowledged", condition=False),
    ])


async def log_in(page: Page) -> None:
    status = await page.evaluate("""async ([u, p]) => (await fetch('/api/login', {method: 'POST',
      headers: {'Content-Type': 'application/json'}, body: JSON.stringify({user: u, password: p})
      })).status""", [USER, PASSWORD])
    assert status == 200
    await page.reload()
    await expect(page.get_by_test_id("current-user")).to_be_visible()


async def new_page(browser: Browser, url: str, **context: Any) -> Page:
    ctx = await browser.new_context(**(context or {"viewport": {"width": 1280, "height": 900}}))
    page = await ctx.new_page()
    await page.goto(url + "/")
    return page


async def test_a_latched_alarm_says_it_waits_for_a_reset_and_is_reset(
        panel: Running, browser: Browser) -> None:
    panel.backend.state = latched_fire()
    page = await new_page(browser, panel.url)
    fire = page.locator(f'[data-testid="alarm"][data-rule="{FIRE}"]')
    smoke = page.locator('[data-testid="alarm"][data-rule="fire.smoke_detector"]')
    await expect(fire.get_by_test_id("alarm-tag")).to_have_text("LATCHED – RESET NEEDED")
    await expect(smoke.get_by_test_id("alarm-tag")).to_have_text("CLEARED – ACK NEEDED")
    # the cleared condition is not shown as if still true; a contact gives its reading now
    await expect(fire.get_by_test_id("alarm-value")).to_have_text("Cleared")
    await expect(fire.get_by_test_id("alarm-limit")).to_have_text("was: 2 devices with smoke on")
    await expect(smoke.get_by_test_id("alarm-value")).to_have_text("Cleared — now off")
    await expect(fire.get_by_test_id("reset-button")).to_be_hidden()  # for a user only
    await log_in(page)
    await expect(fire.get_by_test_id("reset-button")).to_be_visible()
    await expect(smoke.get_by_test_id("reset-button")).to_be_hidden()
    await fire.get_by_test_id("reset-button").click()
    await expect(page.get_by_test_id("message")).to_contain_text("Reset: Fire confirmed")
    assert panel.backend.commands == [("reset", AlarmRef(rule=FIRE, subject="tx-3f"), USER,
                                       None)]
    # a phone shows the tag too (the state text is hidden there)
    await page.set_viewport_size({"width": 360, "height": 740})
    await expect(fire.get_by_test_id("alarm-state")).to_be_hidden()
    await expect(fire.get_by_test_id("alarm-tag")).to_be_visible()
    await expect(smoke.get_by_test_id("alarm-tag")).to_be_visible()
    await page.screenshot(path=shot("latched-phone.png"))


async def test_acknowledges_someone_else_beat_are_information_not_errors(
        panel: Running, browser: Browser) -> None:
    first = alarm(rule="smoke", subject="smoke-1.alarm", title="Smoke in room 1",
                  first_out=False)
    panel.backend.state = sample_state([alarm(), first])
    page = await new_page(browser, panel.url)
    await log_in(page)
    await expect(page.locator('[data-testid="alarm"].unack')).to_have_count(2)
    acks: list[str] = []
    page.on("request", lambda r: acks.append(r.url) if r.url.endswith("/acknowledge") else None)
    # this page does not hear of it, but bob acknowledged the smoke alarm meanwhile
    await page.route("**/api/state", lambda route: route.abort())
    panel.backend.state = sample_state([alarm(), first.model_copy(update={
        "state": "active_acknowledged", "acked_by": "bob"})])
    await page.get_by_test_id("ack-all").click()
    message = page.get_by_test_id("message")
    await expect(message).to_contain_text("Acknowledged 1 alarm.")
    await expect(message).to_contain_text("already acknowledged by bob: Smoke in room 1")
    await expect(message).not_to_have_class("banner message toast bad")
    assert panel.backend.commands[-1] == (  # the smoke alarm skipped, not refused
        "acknowledge_waiting", [AlarmRef(rule="h2_high", subject="h2-batt-01.h2")], USER, None)
    # the card's own button: a double click sends one request; beaten by bob, it says so
    await page.locator('[data-testid="alarm"][data-rule="smoke"]').get_by_test_id(
        "ack-button").dblclick()
    await expect(message).to_have_class("banner message toast info")
    await expect(message).to_contain_text("already acknowledged by bob: Smoke in room 1")
    await asyncio.sleep(0.3)
    assert len(acks) == 2  # ack all, then one for the double click


async def test_a_new_unacknowledged_alarm_sorts_above_acknowledged_ones(
        panel: Running, browser: Browser) -> None:
    old = [alarm(rule=f"r{i}", subject="s", title=f"acked {i}", state="active_acknowledged",
                 first_out=(i == 0), activated_ns=NOW_NS - (100 - i) * 10**9) for i in range(6)]
    panel.backend.state = sample_state([
        *old,
        alarm(rule="new1", subject="s", title="new 1", first_out=False,
              activated_ns=NOW_NS - 20 * 10**9),
        alarm(rule="new2", subject="s", title="new 2", first_out=False,
              activated_ns=NOW_NS - 5 * 10**9),
        alarm(rule="minor", subject="s", title="minor", severity="minor", first_out=False),
    ])
    page = await new_page(browser, panel.url)
    cards = page.get_by_test_id("alarm-list").get_by_test_id("alarm")
    await expect(cards).to_have_count(9)
    order = [await cards.nth(i).get_attribute("data-rule") for i in range(9)]
    assert order == ["new2", "new1", "r0", "r1", "r2", "r3", "r4", "r5", "minor"]


async def test_errors_stay_in_view_and_a_refused_shelve_stays_in_its_dialog(
        panel: Running, browser: Browser) -> None:
    panel.backend.state = confirmed_fire()
    page = await new_page(browser, panel.url, **{**PHONE, "viewport": {"width": 360,
                                                                      "height": 740}})
    await page.clock.install()
    await log_in(page)
    last = page.get_by_test_id("alarm-list").get_by_test_id("alarm").last
    await last.get_by_test_id("shelve-button").click()
    await page.get_by_test_id("shelve-minutes").fill("20000")
    await page.get_by_test_id("shelve-reason").fill("too long")
    await page.get_by_test_id("shelve-submit").click()
    # the gateway's refusal, in plain words, in the dialog that stays open
    await expect(page.get_by_test_id("shelve-error")).to_have_text(
        "Minutes must be at most 10080 (7 days).")
    await expect(page.get_by_test_id("shelve-dialog")).to_be_visible()
    await page.get_by_test_id("shelve-cancel").click()
    # an error far down the page is in view, and stays until dismissed
    panel.backend.refuse = "fire.smoke_detector@smoke-3f-2.smoke is already acknowledged"
    await page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    await page.get_by_test_id("ack-all").dispatch_event("click")
    message = page.get_by_test_id("message")
    await expect(message).to_have_class("banner message toast bad")
    await expect(message).to_contain_text("“Smoke detector in alarm” is already acknowledged")
    await page.clock.fast_forward(20_000)
    await expect(message).to_be_visible()
    box = await message.bounding_box()
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 740
    await page.screenshot(path=shot("error-phone.png"))
    await page.get_by_test_id("message-close").click()
    await expect(message).to_be_hidden()


async def test_a_shelved_alarm_is_unshelved_by_a_user(panel: Running, browser: Browser) -> None:
    panel.backend.state = sample_state([alarm(state="shelved",
                                              shelved_until_ns=NOW_NS + 600 * 10**9)])
    page = await new_page(browser, panel.url)
    await page.locator("details.inactive > summary").click()
    shelved = page.get_by_test_id("inactive-list").get_by_test_id("alarm")
    await expect(shelved.get_by_test_id("alarm-tag")).to_have_text("SHELVED")
    await expect(shelved.get_by_test_id("unshelve-button")).to_be_hidden()
    await log_in(page)
    await page.locator("details.inactive > summary").click()
    await shelved.get_by_test_id("unshelve-button").click()
    await expect(page.get_by_test_id("message")).to_contain_text(
        "Unshelved: Hydrogen high in battery room 1")
    assert panel.backend.commands == [
        ("unshelve", AlarmRef(rule="h2_high", subject="h2-batt-01.h2"), USER)]


async def test_a_hidden_alarm_that_still_drives_outputs_says_so(
        panel: Running, browser: Browser) -> None:
    """A shelved latching alarm latched under its shelf, and a suppressed one whose condition is
    active, both keep their protective outputs on (DESIGN principle 7): their cards say so, in
    the tag a phone shows too and in the state text; a plain shelved alarm does not."""
    panel.backend.state = sample_state([
        alarm(state="shelved", shelved_until_ns=NOW_NS + 600 * 10**9, hidden="latched",
              rule=FIRE, subject="tx-3f", title="Fire confirmed"),
        alarm(state="suppressed", hidden="active", first_out=False),
        alarm(state="shelved", rule="door", subject="door-1.open", title="Door open",
              severity="warning", value=True, first_out=False,
              shelved_until_ns=NOW_NS + 600 * 10**9)])
    page = await new_page(browser, panel.url)
    await page.locator("details.inactive > summary").click()
    cards = page.get_by_test_id("inactive-list").get_by_test_id("alarm")
    fire = cards.filter(has_text="Fire confirmed")
    await expect(fire.get_by_test_id("alarm-tag")).to_have_text("SHELVED – LATCHED")
    await expect(fire).to_contain_text("latched: its outputs stay on; it returns "
                                       "unacknowledged when unshelved")
    h2 = cards.filter(has_text="Hydrogen high")
    await expect(h2.get_by_test_id("alarm-tag")).to_have_text("SUPPRESSED – OUTPUTS ON")
    await expect(h2).to_contain_text("its condition is active: its protective outputs stay on")
    door = cards.filter(has_text="Door open")
    await expect(door.get_by_test_id("alarm-tag")).to_have_text("SHELVED")
    await expect(door).not_to_contain_text("stay on")


async def test_every_time_is_in_the_site_zone_which_the_page_names(
        panel: Running, browser: Browser) -> None:
    until_ns = NOW_NS + 3 * 3600 * 10**9
    panel.backend.state = sample_state().model_copy(update={
        "timezone": SITE_TZ, "suppressions": [SuppressionView(
            scope="battery-1", actor="ops", reason="hot work", since_ns=NOW_NS,
            until_ns=until_ns)]})
    page = await new_page(browser, panel.url, viewport={"width": 1280, "height": 900},
                          timezone_id="Europe/Berlin")
    zone = ZoneInfo(SITE_TZ)
    await expect(page.get_by_test_id("time-zone")).to_contain_text("Asia/Shanghai (GMT+8)")
    await expect(page.get_by_test_id("conn-status")).to_contain_text("live ")
    shown = (await page.get_by_test_id("conn-status").inner_text()).removeprefix("live ")
    site_now = datetime.now(zone)
    assert shown[:5] in {site_now.strftime("%H:%M"),
                         (site_now.replace(second=0)).strftime("%H:%M")}, shown
    until = datetime.fromtimestamp(until_ns / 1e9, zone).strftime("%H:%M:%S")
    await expect(page.get_by_test_id("suppression")).to_contain_text(f"until {until}")


async def test_a_360_px_phone_fits_with_short_words(panel: Running, browser: Browser) -> None:
    panel.backend.state = confirmed_fire()
    page = await new_page(browser, panel.url, **{**PHONE, "viewport": {"width": 360,
                                                                      "height": 740}})
    await expect(page.get_by_test_id("alarm")).to_have_count(5)
    await page.evaluate("window.RoomWardenSound.unlock()")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 360
    for testid in ("ack-all", "sound-toggle", "silence-here", "login-open"):
        box = await page.get_by_test_id(testid).bounding_box()
        assert box is not None and box["x"] + box["width"] <= 360, testid
    sound = page.get_by_test_id("sound-toggle")
    assert await sound.evaluate("e => e.scrollWidth <= e.clientWidth")  # not cut off
    assert (await sound.inner_text()).strip() in {"Sounding", "Sound on", "No sound",
                                                  "Silenced"}
    shelve = page.get_by_test_id("alarm-list").get_by_test_id("shelve-button").first
    assert (await shelve.inner_text()).strip() == "Shelve"
    await page.screenshot(path=shot("fire-phone-360.png"))
    await log_in(page)  # the user's name and Log out in the header: still one screen wide
    await expect(page.get_by_test_id("logout")).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollWidth") <= 360
    box = await page.get_by_test_id("logout").bounding_box()
    assert box is not None and box["x"] + box["width"] <= 360


async def test_a_starting_gateway_never_says_no_active_alarms(
        panel: Running, browser: Browser) -> None:
    panel.backend.state = sample_state([]).model_copy(update={"evaluated": False})
    page = await new_page(browser, panel.url)
    await expect(page.get_by_test_id("starting")).to_be_visible()
    await expect(page.get_by_test_id("starting")).to_contain_text("alarms not known yet")
    await expect(page.get_by_test_id("no-alarms")).to_be_hidden()
    await asyncio.sleep(2)  # a poll or two later: still not claimed
    await expect(page.get_by_test_id("no-alarms")).to_be_hidden()
    panel.backend.state = sample_state([])
    await expect(page.get_by_test_id("no-alarms")).to_be_visible()
    await expect(page.get_by_test_id("starting")).to_be_hidden()


async def test_a_session_that_ended_is_noticed_after_a_reconnect(
        panel: Running, browser: Browser) -> None:
    panel.backend.state = latched_fire()
    page = await new_page(browser, panel.url)
    await log_in(page)
    fire = page.locator(f'[data-testid="alarm"][data-rule="{FIRE}"]')
    await expect(fire.get_by_test_id("reset-button")).to_be_visible()
    panel.server.sessions.drop(next(iter(panel.server.sessions._sessions)))  # a restart
    await page.route("**/api/state", lambda route: route.abort())
    await expect(page.get_by_test_id("conn-status")).to_have_text("connection lost")
    await page.unroute("**/api/state")
    await expect(page.get_by_test_id("login-open")).to_be_visible()
    await expect(page.get_by_test_id("current-user")).to_be_hidden()
    await expect(fire.get_by_test_id("reset-button")).to_be_hidden()


@pytest.mark.parametrize("seconds", [125])
async def test_a_session_that_ended_is_noticed_within_minutes(
        panel: Running, browser: Browser, seconds: int) -> None:
    panel.backend.state = sample_state()
    ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await ctx.new_page()
    await page.clock.install()
    await page.goto(panel.url + "/")
    await log_in(page)
    panel.server.sessions.drop(next(iter(panel.server.sessions._sessions)))  # session_ttl
    await page.clock.fast_forward(seconds * 1000)
    await expect(page.get_by_test_id("current-user")).to_be_hidden()
    await expect(page.get_by_test_id("login-open")).to_be_visible()


async def test_a_cleared_flag_alarm_says_its_reading_in_words(
        panel: Running, browser: Browser) -> None:
    """A device back online: "Cleared — now answering" (the Describer's flag words), not
    "now ON"."""
    panel.backend.state = sample_state([
        fire_alarm(rule="sensor_health.device_offline", subject="th-tx-a03", severity="major",
                   title="Device not answering", value=True, limit="not answering for 30 s",
                   state="returned_unacknowledged", condition=False,
                   flag_words=("not answering", "answering"))])
    page = await new_page(browser, panel.url)
    card = page.locator('[data-testid="alarm"][data-rule="sensor_health.device_offline"]')
    await expect(card.get_by_test_id("alarm-value")).to_have_text("Cleared — now answering")
    await expect(card.get_by_test_id("alarm-limit")).to_have_text("was: not answering for 30 s")
