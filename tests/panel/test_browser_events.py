"""The Events and Incidents views in a real headless Chromium against the real gateway: the
simulated equipment room, the daemon (bus loops, rules, alarm journal, flight recorder and
incident keeper, panel) — a confirmed fire is raised and acknowledged through the panel, then
found in the Events view filtered by who acknowledged it, and its incident's report opened from
the Incidents view."""

from __future__ import annotations

import asyncio
import os
import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.recorder.store import IncidentStore
from gateway.sim.signals import Constant
from tests.panel.live import Live
from tests.panel.test_browser import ARGS, CHROMIUM
from tests.panel.test_browser_console import PHONE, shot
from tests.panel.test_end_to_end import live  # noqa: F401  (the fixture: the real gateway)

FIRE = "fire.smoke_coincidence"

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} is not installed (apt install chromium)"
)

if os.access(CHROMIUM, os.X_OK):
    from playwright.async_api import Page, async_playwright, expect


async def until(condition: object, seconds: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, "condition never held"
        await asyncio.sleep(0.05)


async def show(page: Page) -> None:
    """Press Show and wait for this query's answer (the status leaves "Reading …")."""
    await page.get_by_test_id("events-show").click()
    await expect(page.get_by_test_id("events-status")).not_to_contain_text("Reading",
                                                                            timeout=15_000)


async def acknowledge_the_fire(page: Page, live: Live) -> None:  # noqa: F811
    live.site.set_signal("smoke-tx-01.alarm", Constant(value=True))
    live.site.set_signal("smoke-tx-02.alarm", Constant(value=True))
    fire = page.locator(f'[data-testid="alarm"][data-rule="{FIRE}"]')
    await expect(fire).to_be_visible(timeout=30_000)
    await fire.get_by_test_id("ack-button").click()
    await expect(page.get_by_test_id("login-dialog")).to_be_visible()
    await page.get_by_label("User").fill("demo")
    await page.get_by_label("Password").fill("demo")
    await page.get_by_test_id("login-submit").click()
    await expect(fire.get_by_test_id("alarm-state")).to_have_text("active acknowledged",
                                                                   timeout=10_000)


async def test_the_acknowledged_fire_in_the_events_view_and_its_incident_report(
        live: Live) -> None:  # noqa: F811
    zone = ZoneInfo(live.gateway.loaded.config.gateway.timezone)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            # the browser in UTC, the site in Asia/Shanghai: times must be the site's
            ctx = await browser.new_context(viewport={"width": 1280, "height": 900},
                                            timezone_id="UTC")
            page = await ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(live.url + "/")
            await acknowledge_the_fire(page, live)

            # --- Events, filtered by who acknowledged ---------------------------------------
            await page.get_by_test_id("nav-events").click()
            view = page.get_by_test_id("events-view")
            await expect(view).to_be_visible()
            await expect(page.get_by_test_id("alarm-list")).to_be_hidden()
            rows = page.get_by_test_id("event-row")
            await expect(rows.first).to_be_visible(timeout=10_000)  # the last 24 h, unfiltered
            await view.get_by_label("Who (name contains)").fill("demo")
            await show(page)
            ack = rows.filter(has_text=FIRE)
            await expect(ack).to_have_count(1, timeout=10_000)
            await expect(ack.get_by_test_id("event-state")).to_have_text(
                "active unacknowledged → active acknowledged")
            await expect(ack.get_by_test_id("event-room")).to_contain_text(
                "3F transmission equipment room")
            for actor in await rows.evaluate_all("rs => rs.map(r => r.dataset.actor)"):
                assert actor == "demo"
            # the time as the journal holds it, shown in the site's zone
            seq = int(await ack.get_attribute("data-seq") or 0)
            [event] = [e for e in live.gateway.core.journal.events_since(seq - 1, limit=1)]
            assert event.actor == "demo" and event.rule == FIRE
            shown = datetime.fromtimestamp(event.ts / 1e9, zone).strftime("%Y-%m-%d %H:%M:%S")
            await expect(ack.get_by_test_id("event-time")).to_have_text(shown)
            await page.screenshot(path=shot("events-by-actor.png"))
            # more filters: critical only in the room shows the fire; another name, nothing
            await view.get_by_label("Severity", exact=True).select_option("critical")
            await view.get_by_label("Room", exact=True).select_option("tx-3f")
            await view.get_by_label("Who (name contains)").fill("")
            await show(page)
            await expect(rows.filter(has_text=FIRE).first).to_be_visible()
            sevs = await rows.evaluate_all("rs => rs.map(r => r.className)")
            assert sevs and all("sev-critical" in c for c in sevs), sevs
            actors = set(await rows.evaluate_all("rs => rs.map(r => r.dataset.actor)"))
            assert {"system", "demo"} <= actors, actors  # the fire's rise and its ack
            for room in await page.get_by_test_id("event-room").all_inner_texts():
                assert "(tx-3f)" in room, room
            await view.get_by_label("Who (name contains)").fill("nobody-by-this-name")
            await show(page)
            await expect(page.get_by_test_id("events-status")).to_contain_text("Nothing matches")
            await expect(rows).to_have_count(0)
            # a custom range the gateway refuses is explained, not swallowed
            await view.get_by_label("Period", exact=True).select_option("custom")
            await view.get_by_label("From (site time)", exact=True).fill("2026-01-01T00:00")
            await view.get_by_label("Until (site time)", exact=True).fill("2026-06-01T00:00")
            await show(page)
            await expect(page.get_by_test_id("events-error")).to_contain_text("at most 31 days")

            # --- Incidents and the report -----------------------------------------------------
            store = IncidentStore(live.gateway.state_dir / "incidents")
            await until(lambda: len(store.ids()) >= 1)
            incident_id = next(i for i in store.ids() if store.load(i)["trigger"]["rule"] in (
                FIRE, "fire.smoke_detector"))
            await page.get_by_test_id("nav-incidents").click()
            row = page.locator(f'[data-testid="incident-row"][data-id="{incident_id}"]')
            await expect(row).to_be_visible(timeout=10_000)
            await expect(row).to_contain_text("CRITICAL" if store.load(incident_id)["trigger"][
                "severity"] == "critical" else "MAJOR")
            await row.get_by_test_id("incident-open").click()
            await expect(page.get_by_test_id("report-view")).to_be_visible()
            report = page.frame_locator('[data-testid="report-frame"]')
            await expect(report.locator("h1")).to_have_text(f"Incident {incident_id}",
                                                            timeout=10_000)
            await expect(report.locator("svg.plot").first).to_be_visible()
            await expect(report.locator(".axis-label").first).to_contain_text("time (UTC)")
            await expect(report.locator("table.timeline")).to_contain_text("smoke")
            frame_box = await page.get_by_test_id("report-frame").bounding_box()
            assert frame_box is not None and frame_box["height"] > 300
            assert frame_box["y"] < 900, frame_box  # the report is on the screen shot
            await page.screenshot(path=shot("incident-report-in-panel.png"))
            # the new-tab link serves the same page
            href = await page.get_by_test_id("report-link").get_attribute("href")
            assert href == f"/api/incidents/report?id={incident_id}"
            await page.get_by_test_id("report-close").click()
            await expect(page.get_by_test_id("report-view")).to_be_hidden()
            # back on the console: the alarm is still there, acknowledged
            await page.get_by_test_id("nav-alarms").click()
            await expect(page.locator(f'[data-testid="alarm"][data-rule="{FIRE}"]')).to_be_visible()
            assert errors == []

            # --- on a phone: the same journal, one event per card, nothing wider than the screen
            phone = await browser.new_context(**PHONE, timezone_id="UTC")
            small = await phone.new_page()
            await small.goto(live.url + "/#events")
            view = small.get_by_test_id("events-view")
            await view.get_by_label("Who (name contains)").fill("demo")
            await show(small)
            card = small.get_by_test_id("event-row").filter(has_text=FIRE)
            await expect(card).to_be_visible(timeout=10_000)
            await expect(card.get_by_role("cell", name="By: demo")).to_be_visible()
            width = await small.evaluate("() => document.documentElement.scrollWidth")
            assert width <= 390, width
            box = await small.get_by_test_id("nav-alarms").bounding_box()
            assert box is not None and box["y"] < 200  # the way back is at the top here
            await small.screenshot(path=shot("events-phone.png"), full_page=True)
        finally:
            await browser.close()


async def test_a_panel_that_needs_a_login_to_view_shows_the_report_after_it(
        tmp_path: Path) -> None:
    """With `login_to_view` the views ask for the login like the console, and the report in
    its sandboxed frame is read with the same session."""
    from tests.panel.conftest import PASSWORD, USER
    from tests.panel.test_events_http import INCIDENT, _serve

    async for site in _serve(tmp_path, login_to_view=True):
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS,
                                               headless=True)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                await page.goto(site.url + "/#incidents")
                await expect(page.get_by_test_id("login-dialog")).to_be_visible()
                await expect(page.get_by_test_id("incidents-error")).to_contain_text(
                    "needs a login")
                await page.get_by_label("User").fill(USER)
                await page.get_by_label("Password").fill(PASSWORD)
                await page.get_by_test_id("login-submit").click()
                await expect(page.get_by_test_id("current-user")).to_have_text(
                    f"Logged in: {USER}")
                await page.get_by_test_id("incidents-refresh").click()
                row = page.locator(f'[data-testid="incident-row"][data-id="{INCIDENT}"]')
                await row.get_by_test_id("incident-open").click()
                report = page.frame_locator('[data-testid="report-frame"]')
                await expect(report.locator("h1")).to_have_text(f"Incident {INCIDENT}",
                                                                timeout=10_000)
                await expect(report.locator("table.timeline")).to_contain_text(
                    "brigade called")
            finally:
                await browser.close()


async def test_a_drill_event_is_marked_drill(tmp_path: Path) -> None:
    """A live drill's journal events are shown as drill, never as a real alarm."""
    import dataclasses

    from gateway.alarms.journal import Journal
    from gateway.alarms.journal_batch import JournalBatch
    from tests.panel.test_events import EVENTS, NOW
    from tests.panel.test_events_http import _serve

    async for site in _serve(tmp_path):
        journal = Journal(tmp_path / "alarms.sqlite")
        drill = dataclasses.replace(EVENTS[0], seq=10_000, ts=NOW - 60 * 10**9, drill=True,
                                    subject="drill:tx-3f", actor="system",
                                    title="Fire confirmed (drill)")
        assert journal.commit(JournalBatch(events=[drill]))
        journal.close()
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS,
                                               headless=True)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                await page.goto(site.url + "/#events")
                row = page.locator('[data-testid="event-row"][data-seq="10000"]')
                await expect(row.get_by_test_id("event-drill")).to_have_text("DRILL",
                                                                             timeout=10_000)
                await expect(row).to_have_class(re.compile(r"\bdrill\b"))
                real = page.locator('[data-testid="event-row"]:not(.drill)')
                await expect(real).to_have_count(0)  # the other events are 2 days old
                await page.get_by_test_id("events-period").select_option("7d")
                await show(page)
                await expect(real.first).to_be_visible()
                assert await real.get_by_test_id("event-drill").count() == 0
            finally:
                await browser.close()
