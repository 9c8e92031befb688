"""Audit F7 in a real headless Chromium against the real panel server: during a flood the card
of the alarm that started it is tagged FLOOD FIRST OUT (and listed first of its severity), the
flood banner names it (title, room, time), and every room's own first-out steps back (quieter,
in words too); outside a flood nothing is marked and FIRST OUT reads as before."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime

import pytest

from gateway.panel.views import FloodFirstOut, FloodView, PanelAlarm, PanelState
from tests.panel.conftest import NOW_NS, Running, alarm, sample_state
from tests.panel.test_browser import CHROMIUM
from tests.panel.test_browser_console import browser, contrast, shot

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} is not installed (apt install chromium)"
)

if os.access(CHROMIUM, os.X_OK):
    from playwright.async_api import Browser, expect

__all__ = ["browser"]

UPS_RULE = "power.ups_on_battery"
UPS_ROOM = "UPS room <B1>"
"""The room's name from the site's config: shown as text, never read as markup."""
UPS_AT = NOW_NS - 95 * 10**9
FLOOD_AT = NOW_NS - 80 * 10**9


def at(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%H:%M:%S")


def mains_dip(flood: bool) -> PanelState:
    """A mains dip: the UPS on battery first, then devices offline in 11 other rooms and a
    hydrogen alarm; every alarm is its room's first-out. `flood`: the flood is on (begun by
    the UPS alarm) — else the same alarms without one."""
    alarms: list[PanelAlarm] = [
        alarm(rule=UPS_RULE, subject="ups-1.status.utility_fail", severity="major",
              title="UPS on battery (mains lost)", value=True, room="ups-b1",
              room_name=UPS_ROOM, activated_ns=UPS_AT, flood_first_out=flood),
        *(alarm(rule="sensor_health.device_offline", subject=f"dev-{i}", severity="major",
                title="Device offline (not answering)", value=False, room=f"room-{i}",
                activated_ns=UPS_AT + (2 + i) * 10**9) for i in range(11)),
        alarm(activated_ns=UPS_AT + 30 * 10**9),  # hydrogen (critical) in battery-1
    ]
    state = sample_state(alarms, flood=flood)
    if not flood:
        return state
    return state.model_copy(update={"flood": FloodView(
        since_ns=FLOOD_AT, activations=12, first_out=FloodFirstOut(
            rule=UPS_RULE, subject="ups-1.status.utility_fail",
            title="UPS on battery (mains lost)", room="ups-b1", room_name=UPS_ROOM,
            activated_ns=UPS_AT, state="active_unacknowledged"))})


async def test_the_flood_first_out_is_tagged_and_named_in_the_banner(
        panel: Running, browser: Browser) -> None:
    panel.backend.state = mains_dip(flood=True)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(panel.url + "/")
    cards = page.get_by_test_id("alarm-list").get_by_test_id("alarm")
    await expect(cards).to_have_count(13)

    banner = page.get_by_test_id("flood-banner")
    await expect(banner).to_be_visible()
    await expect(banner.get_by_test_id("flood-text")).to_contain_text(
        f"Alarm flood since {at(FLOOD_AT)}")
    await expect(banner.get_by_test_id("flood-text")).to_contain_text("FLOOD FIRST OUT")
    await expect(banner.get_by_test_id("flood-banner-first-out")).to_have_text(
        f"Flood first-out: UPS on battery (mains lost) — {UPS_ROOM}, since {at(UPS_AT)}.")
    assert await banner.locator("b1").count() == 0  # the room's name stayed text

    ups = page.locator(f'[data-testid="alarm"][data-rule="{UPS_RULE}"]')
    await expect(ups.get_by_test_id("flood-first-out")).to_be_visible()
    await expect(ups.get_by_test_id("flood-first-out")).to_have_text("FLOOD FIRST OUT")
    await expect(ups.get_by_test_id("first-out")).to_be_hidden()  # one tag says it all
    await expect(ups).to_have_attribute("aria-label", re.compile(r", flood first out$"))
    # only that card is tagged; the critical alarm stays on top, the UPS alarm heads the
    # major ones although eleven newer ones wait for an acknowledgement too
    await expect(page.locator('[data-testid="flood-first-out"]:visible')).to_have_count(1)
    assert await cards.nth(0).get_attribute("data-rule") == "h2_high"
    assert await cards.nth(1).get_attribute("data-rule") == UPS_RULE

    # every room's own first-out steps back: quieter, and says it is the room's
    offline = page.locator('[data-testid="alarm"][data-subject="dev-3"]')
    await expect(offline.get_by_test_id("flood-first-out")).to_be_hidden()
    await expect(offline.get_by_test_id("first-out")).to_have_text("room first out")
    await expect(offline.get_by_test_id("first-out")).to_have_class("tag firstout quiet")
    # both tags keep WCAG AA contrast on the card (the unacknowledged card's steady colour)
    await page.emulate_media(reduced_motion="reduce")
    pairs = await page.evaluate("""(() => {
      const rgb = (s) => s.match(/\\d+/g).slice(0, 3).map(Number);
      const bgOf = (e) => { for (; e; e = e.parentElement) {
        const c = getComputedStyle(e).backgroundColor;
        if (c && !c.startsWith('rgba(0, 0, 0, 0)')) return rgb(c); } return [15, 20, 25]; };
      return ['[data-testid=flood-first-out]', '[data-testid=first-out]'].map((s) => {
        const e = Array.from(document.querySelectorAll(s)).find((x) => x.offsetParent !== null);
        return [s, rgb(getComputedStyle(e).color), bgOf(e)]; });
    })()""")
    assert [s for s, fg, bg in pairs if contrast(tuple(fg), tuple(bg)) < 4.5] == [], pairs
    await page.screenshot(path=shot("flood-first-out.png"))

    # the flood is over: nothing is marked, the first-outs read FIRST OUT as before
    panel.backend.state = mains_dip(flood=False)
    await expect(banner).to_be_hidden()
    await expect(ups.get_by_test_id("flood-first-out")).to_be_hidden()
    await expect(ups.get_by_test_id("first-out")).to_have_text("FIRST OUT")
    await expect(offline.get_by_test_id("first-out")).to_have_class("tag firstout")
    await expect(page.locator('[data-testid="flood-first-out"]:visible')).to_have_count(0)
    await expect(ups).not_to_have_attribute("aria-label", re.compile("flood"))
    assert errors == []
