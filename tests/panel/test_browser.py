"""The page in a real headless Chromium (Debian's /usr/bin/chromium) against the real server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.panel.views import AlarmRef
from tests.panel.conftest import NOW_NS, PASSWORD, USER, Running, alarm, sample_state

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} is not installed (apt install chromium)"
)

if os.access(CHROMIUM, os.X_OK):
    from playwright.async_api import Browser, async_playwright, expect


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


async def test_see_log_in_acknowledge(panel: Running, browser: Browser, tmp_path: Path) -> None:
    backend = panel.backend
    backend.state = sample_state([
        alarm(),
        alarm(rule="temp_high", subject="th-batt-02.temperature", title="Temperature high",
              severity="minor", state="active_acknowledged", value=31.2, first_out=False),
    ])
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # the browser logs every 4xx fetch: the 401s before the login and the 409 are expected
    expected = ("status of 401 (Unauthorized)", "status of 409 (Conflict)")
    page.on(
        "console",
        lambda m: errors.append(m.text)
        if m.type == "error" and not m.text.endswith(expected)
        else None,
    )
    await page.goto(panel.url + "/")

    h2 = page.locator('[data-testid="alarm"][data-rule="h2_high"]')
    await expect(h2.get_by_test_id("alarm-title")).to_have_text("Hydrogen high in battery room 1")
    await expect(h2.get_by_test_id("alarm-state")).to_have_text("active unacknowledged")
    await expect(h2.get_by_test_id("first-out")).to_be_visible()
    await expect(h2.get_by_test_id("alarm-value")).to_have_text("27.50")
    await expect(h2.get_by_test_id("alarm-room")).to_have_text("battery-1")  # no name given
    await expect(h2.get_by_test_id("alarm-age")).to_have_text("1 min")
    await expect(h2).to_have_class("alarm sev-critical unack first")
    # critical before minor
    await expect(page.get_by_test_id("alarm")).to_have_count(2)
    await expect(page.get_by_test_id("alarm").first).to_have_attribute("data-rule", "h2_high")
    # an acknowledged alarm has no Acknowledge button
    temp = page.locator('[data-testid="alarm"][data-rule="temp_high"]')
    await expect(temp.get_by_test_id("ack-button")).to_be_hidden()
    # readings and health
    offline = page.locator('[data-testid="device"][data-device-id="th-batt-01"]')
    await expect(offline.get_by_test_id("device-status")).to_have_text("OFFLINE")
    await expect(offline.get_by_test_id("point-quality")).to_have_text("⚠ comm error")
    bus = page.locator('[data-testid="bus"][data-bus-id="rs485-1"]')
    await expect(bus).to_contain_text("1 / 2")
    await expect(page.get_by_test_id("uplink")).to_have_text("not configured")
    await expect(page.get_by_test_id("flood-banner")).to_be_hidden()
    await page.screenshot(path=str(tmp_path / "panel-desktop.png"), full_page=True)

    # Acknowledge asks for a login, then goes through with the user as actor
    await h2.get_by_test_id("ack-button").click()
    await expect(page.get_by_test_id("login-dialog")).to_be_visible()
    await page.get_by_label("User").fill(USER)
    await page.get_by_label("Password").fill("wrong")
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("login-error")).to_have_text("wrong user name or password")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("login-dialog")).to_be_hidden()
    await expect(page.get_by_test_id("current-user")).to_have_text(f"Logged in: {USER}")
    await expect(page.get_by_test_id("logout")).to_be_visible()
    await expect(page.get_by_test_id("message")).to_contain_text("Acknowledged")
    ref = AlarmRef(rule="h2_high", subject="h2-batt-01.h2")
    # the card's button acknowledges it unless someone else did meanwhile (no refusal then)
    assert backend.commands == [("acknowledge_waiting", [ref], USER, None)]

    # the daemon changes the state; the page follows within a poll or two
    backend.state = sample_state(
        [alarm(state="active_acknowledged"),
         alarm(rule="smoke", subject="smoke-1.alarm", title="Smoke in battery room 1",
               value=True, first_out=False, activated_ns=NOW_NS - 5 * 10**9)],
        flood=True,
    )
    await expect(h2.get_by_test_id("alarm-state")).to_have_text("active acknowledged")
    await expect(h2).not_to_have_class("alarm sev-critical unack first")
    await expect(page.get_by_test_id("alarm")).to_have_count(2)
    await expect(page.get_by_test_id("flood-banner")).to_be_visible()
    smoke = page.locator('[data-testid="alarm"][data-rule="smoke"]')
    await expect(smoke.get_by_test_id("alarm-value")).to_have_text("ON")

    # Acknowledge all, shelve and suppress, now that we are logged in
    await page.get_by_test_id("ack-all").click()
    await expect(page.get_by_test_id("message")).to_contain_text("Acknowledged 1 alarm")
    smoke_ref = AlarmRef(rule="smoke", subject="smoke-1.alarm")
    assert backend.commands[-1:] == [("acknowledge_waiting", [smoke_ref], USER, None)]
    await smoke.get_by_test_id("shelve-button").click()
    await page.get_by_test_id("shelve-minutes").fill("15")
    await page.get_by_test_id("shelve-reason").fill("detector test")
    await page.get_by_test_id("shelve-submit").click()
    await expect(page.get_by_test_id("message")).to_contain_text("Shelved for 15 min")
    assert backend.commands[-1:] == [("shelve", smoke_ref, USER, 15.0, "detector test")]
    await page.get_by_test_id("suppress-open").click()  # suppress lives in a dialog
    await page.get_by_test_id("suppress-scope").fill("battery-1")
    await page.get_by_test_id("suppress-minutes").fill("90")
    await page.get_by_test_id("suppress-reason").fill("hot work permit 42")
    await page.get_by_test_id("suppress-submit").click()
    await expect(page.get_by_test_id("message")).to_contain_text("Suppressed battery-1")
    assert backend.commands[-1:] == [("suppress", "battery-1", USER, 90.0, "hot work permit 42")]
    await page.get_by_test_id("suppress-close").click()

    # a refusal is shown, not swallowed: in the shelve dialog, which stays open
    backend.refuse = "alarm h2_high/h2-batt-01.h2 is not shelvable"
    await h2.get_by_test_id("shelve-button").click()
    await page.get_by_test_id("shelve-reason").fill("x")
    await page.get_by_test_id("shelve-submit").click()
    await expect(page.get_by_test_id("shelve-error")).to_have_text(
        "Alarm h2_high/h2-batt-01.h2 is not shelvable")
    await page.get_by_test_id("shelve-cancel").click()
    backend.refuse = None

    await page.get_by_test_id("logout").click()
    await expect(page.get_by_test_id("login-open")).to_be_visible()
    await expect(page.get_by_test_id("current-user")).to_be_hidden()
    assert errors == []


async def test_phone_screenshot(panel: Running, browser: Browser, tmp_path: Path) -> None:
    panel.backend.state = sample_state([
        alarm(),
        alarm(rule="smoke", subject="smoke-1.alarm", title="Smoke in battery room 1",
              value=True, first_out=False, severity="major"),
        alarm(rule="temp_high", subject="th-batt-02.temperature", title="Temperature high",
              severity="minor", state="active_acknowledged", value=31.2, first_out=False),
        alarm(rule="door", subject="door-1.open", title="Door open", severity="warning",
              state="shelved", value=True, first_out=False,
              shelved_until_ns=NOW_NS + 600 * 10**9),
    ], flood=True)
    context = await browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
        has_touch=True, reduced_motion="reduce",
    )
    page = await context.new_page()
    await page.goto(panel.url + "/")
    await expect(page.get_by_test_id("alarm-list").get_by_test_id("alarm")).to_have_count(3)
    await expect(page.get_by_test_id("inactive-count")).to_have_text("1")
    # nothing wider than the screen: no sideways scrolling of the whole page
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    box = await page.get_by_test_id("ack-button").first.bounding_box()
    assert box is not None and box["height"] >= 44
    await page.screenshot(path=str(tmp_path / "panel-phone.png"))
    await page.screenshot(path=str(tmp_path / "panel-phone-full.png"), full_page=True)
    for section in ("readings", "health"):
        await page.locator(f"section[aria-labelledby={section}-h]").screenshot(
            path=str(tmp_path / f"panel-phone-{section}.png"))
    await page.get_by_test_id("ack-button").first.click()
    await expect(page.get_by_test_id("login-dialog")).to_be_visible()
    await page.screenshot(path=str(tmp_path / "panel-phone-login.png"))
    await context.close()
