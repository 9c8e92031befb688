"""The panel as an alarm console (issue 14), in a real headless Chromium against the real
panel server: what it must never claim, what it must always show."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal, TypedDict

import pytest

from gateway.config.section import replaced
from gateway.panel.views import HealthView, OutputView, PanelAlarm, PanelState
from gateway.rules.responses import Responses
from tests import shipped
from tests.panel.conftest import NOW_NS, Running, alarm, sample_state
from tests.panel.test_browser import ARGS as BASE_ARGS
from tests.panel.test_browser import CHROMIUM

ARGS = [*BASE_ARGS, "--autoplay-policy=no-user-gesture-required"]  # the alarm sound plays


class Viewport(TypedDict):
    width: int
    height: int


class PhoneContext(TypedDict):
    """Keyword arguments of `Browser.new_context` for a phone (typed: the call is checked)."""

    viewport: Viewport
    device_scale_factor: float
    is_mobile: bool
    has_touch: bool
    reduced_motion: Literal["reduce"]


PHONE: PhoneContext = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
                       "is_mobile": True, "has_touch": True, "reduced_motion": "reduce"}
SHOTS = Path(os.environ.get("PANEL_SHOTS", "/tmp/roomwarden-panel-shots"))

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} is not installed (apt install chromium)"
)

if os.access(CHROMIUM, os.X_OK):
    from playwright.async_api import Browser, Page, async_playwright, expect


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


def shot(name: str) -> str:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return str(SHOTS / name)


def fire_alarm(**over: Any) -> PanelAlarm:
    data: dict[str, Any] = {
        "room": "tx-3f", "room_name": "Transmission room, 3rd floor", "first_out": False,
        "activated_ns": NOW_NS - 40 * 10**9, "actions": ["alarm_panel"],
    }
    data.update(over)
    # what to do, in the shipped packs' words (a card's real height on a phone)
    data.setdefault("response", Responses(shipped.packs().values()).response(data["rule"]))
    return alarm(**data)


def confirmed_fire(acked: bool = False) -> PanelState:
    """Two smoke detectors in one room (fire confirmed), heat rising, siren and strobe on."""
    state = "active_acknowledged" if acked else "active_unacknowledged"
    ack: dict[str, Any] = {"acked_by": "alice", "acked_ns": NOW_NS - 10 * 10**9,
                           "acked_note": "fire brigade called"} if acked else {}
    alarms = [
        fire_alarm(rule="fire.smoke_coincidence", subject="tx-3f", severity="critical",
                   title="Fire confirmed — two independent smoke detectors in the room",
                   value=2, limit="2 devices with smoke on", state=state,
                   actions=["siren", "strobe", "alarm_panel"], **ack),
        fire_alarm(rule="fire.smoke_detector", subject="smoke-3f-1.smoke", severity="major",
                   title="Smoke detector in alarm", value=True, limit="smoke on",
                   device="smoke-3f-1", device_name="Smoke detector 1", location="row A, rack 3",
                   first_out=True, activated_ns=NOW_NS - 55 * 10**9, state=state, **ack),
        fire_alarm(rule="fire.smoke_detector", subject="smoke-3f-2.smoke", severity="major",
                   title="Smoke detector in alarm", value=True, limit="smoke on",
                   device="smoke-3f-2", device_name="Smoke detector 2", location="row C, rack 7",
                   state=state, **ack),
        fire_alarm(rule="fire.heat_fixed", subject="heat-3f-1.temperature", severity="major",
                   title="Heat — fixed temperature reached (57 °C)", value=61.4, unit="°C",
                   limit="≥ 57 °C", device="heat-3f-1", device_name="Heat detector 1",
                   location="row A, rack 3", state=state, **ack),
        fire_alarm(rule="fire.heat_rate_of_rise", subject="heat-3f-1.temperature",
                   severity="major", title="Heat — temperature rising faster than 8.3 °C/min",
                   value=11.2, unit="°C", limit="rate of change > 8.3 °C/min",
                   device="heat-3f-1", device_name="Heat detector 1", location="row A, rack 3",
                   state=state, **ack),
    ]
    base = sample_state(alarms)
    outputs = [
        OutputView(id="siren-3f", role="siren", on=not acked, confirmed=not acked, failed=False,
                   error=None, blocked_by=None, reasons=[] if acked else ["fire"],
                   rooms=["tx-3f"], silence_on_ack=True),
        OutputView(id="strobe-3f", role="strobe", on=True, confirmed=True, failed=False,
                   error=None, blocked_by=None, reasons=["fire"], rooms=["tx-3f"]),
        OutputView(id="fan-3f", role="exhaust_fan", on=False, confirmed=False, failed=False,
                   error=None, blocked_by=None, reasons=[], rooms=["tx-3f"]),
    ]
    health = base.health.model_dump()
    health["outputs"] = [o.model_dump() for o in outputs]
    return base.model_copy(update={"health": HealthView.model_validate(health),
                                   "timezone": "UTC"})


async def sound_until(page: Page, key: str, value: object, timeout: float = 8.0) -> dict[str, Any]:
    """Polls the page's sound state (the panel's CSP forbids evaluating strings)."""
    deadline = time.monotonic() + timeout
    while True:
        st: dict[str, Any] = await page.evaluate("() => window.RoomWardenSound.state()")
        if st[key] == value or time.monotonic() > deadline:
            assert st[key] == value, st
            return st
        await asyncio.sleep(0.1)


async def open_page(browser: Browser, url: str, **context: Any) -> Page:
    ctx = await browser.new_context(**(context or {"viewport": {"width": 1280, "height": 900}}))
    page = await ctx.new_page()
    await page.goto(url + "/")
    return page


async def test_loading_never_claims_no_alarms(panel: Running, browser: Browser) -> None:
    """Before the first state the page says it does not know; never 'No active alarms'."""
    ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await ctx.new_page()
    gate = asyncio.Event()

    async def hold(route: Any) -> None:
        await gate.wait()
        with contextlib.suppress(Exception):  # the page gave up on it (its own timeout)
            await route.continue_()

    await page.route("**/api/state", hold)
    await page.goto(panel.url + "/")
    await expect(page.get_by_test_id("loading")).to_be_visible()
    await expect(page.get_by_test_id("no-alarms")).to_be_hidden()
    await expect(page.get_by_test_id("alarm-count")).to_have_text("?")
    assert "No active alarms" not in await page.inner_text("body")
    await page.screenshot(path=shot("loading.png"))
    # no answer for a while: the page says alarms are not known, in a banner
    await expect(page.get_by_test_id("stale-banner")).to_contain_text("NOT known", timeout=8000)
    await expect(page.get_by_test_id("no-alarms")).to_be_hidden()
    gate.set()
    await page.unroute("**/api/state")
    panel.backend.state = sample_state([])
    await expect(page.get_by_test_id("no-alarms")).to_be_visible(timeout=8000)
    await expect(page.get_by_test_id("loading")).to_be_hidden()
    await expect(page.get_by_test_id("stale-banner")).to_be_hidden()
    await ctx.close()


async def test_gateway_gone_banner_and_stale_content(panel: Running, browser: Browser) -> None:
    panel.backend.state = confirmed_fire()
    page = await open_page(browser, panel.url)
    await expect(page.get_by_test_id("alarm")).to_have_count(5)
    await expect(page.get_by_test_id("stale-banner")).to_be_hidden()
    assert await page.get_attribute('[data-testid="content"]', "data-stale") == "false"
    await panel.server.stop()
    stopped = time.monotonic()
    # the page's promise: stale 4 s (STALE_MS) after its last answer (at the latest, the
    # stop), seen by a check that runs every second: 5 s by the page's own timers, with no
    # room for them to run late; 7 s allows 2 s of that (a 5 s bound failed now and then
    # under make test's six workers on two cores)
    await expect(page.get_by_test_id("stale-banner")).to_be_visible(timeout=7000)
    assert time.monotonic() - stopped < 7.0
    await expect(page.get_by_test_id("stale-banner")).to_contain_text("NO LIVE DATA")
    await expect(page.get_by_test_id("content")).to_have_attribute("data-stale", "true")
    # the content is greyed out: a grayscale filter and reduced opacity on the alarm list
    style = await page.evaluate(
        "(() => { const s = getComputedStyle(document.querySelector('main'));"
        " return [s.filter, s.opacity]; })()")
    assert "grayscale" in style[0] and float(style[1]) < 1
    await page.screenshot(path=shot("stale-desktop.png"))


async def test_outputs_confirmed_off_and_siren_state(panel: Running, browser: Browser) -> None:
    panel.backend.state = confirmed_fire()
    page = await open_page(browser, panel.url)
    fan = page.locator('[data-testid="output"][data-output-id="fan-3f"]')
    await expect(fan.get_by_test_id("output-state")).to_have_text("off")
    await expect(fan.get_by_test_id("output-details")).to_have_text("confirmed off")
    siren = page.locator('[data-testid="output"][data-output-id="siren-3f"]')
    await expect(siren.get_by_test_id("output-details")).to_contain_text("confirmed on")
    chip = page.locator('[data-testid="strip-output"][data-output-id="siren-3f"]')
    await expect(chip).to_have_text("Siren siren-3f: SOUNDING")
    # a coil that reads back other than commanded is not "confirmed"
    state = confirmed_fire()
    health = state.health.model_dump()
    health["outputs"][2].update(on=True, confirmed=False)
    panel.backend.state = state.model_copy(update={"health": HealthView.model_validate(health)})
    await expect(fan.get_by_test_id("output-details")).to_contain_text(
        "read back off: does not follow")
    # held off by an interlock: the panel says by what and the interlock's `reason`
    health["outputs"][2].update(on=False, confirmed=False, blocked_by="agent-release",
                                block_reason="no exhaust while the agent holds the room")
    panel.backend.state = state.model_copy(update={"health": HealthView.model_validate(health)})
    await expect(fan.get_by_test_id("output-details")).to_contain_text(
        "blocked by agent-release — no exhaust while the agent holds the room")
    # acknowledged: the siren is off because it was silenced, and says so
    panel.backend.state = confirmed_fire(acked=True)
    await expect(chip).to_have_text("Siren siren-3f: silenced")


async def test_sound_starts_and_silence_here_does_not_acknowledge(
        panel: Running, browser: Browser) -> None:
    panel.backend.state = sample_state([])
    page = await open_page(browser, panel.url)
    await expect(page.get_by_test_id("no-alarms")).to_be_visible()
    sound = "() => window.RoomWardenSound.state()"
    assert (await page.evaluate(sound))["playing"] is False
    panel.backend.state = confirmed_fire()
    st = await sound_until(page, "playing", True)
    assert st["context"] == "running" and st["pattern"] == "critical"
    await expect(page.get_by_test_id("silence-here")).to_be_visible()
    await page.get_by_test_id("silence-here").click()
    await sound_until(page, "context", "suspended", 5.0)
    assert (await page.evaluate(sound))["playing"] is False
    await expect(page.get_by_test_id("message")).to_contain_text("NOT acknowledged")
    assert panel.backend.commands == []  # nothing was acknowledged at the gateway
    await expect(page.get_by_test_id("alarm").first).to_have_attribute(
        "data-state", "active_unacknowledged")
    # still silent over the next states; a NEW alarm sounds again
    await asyncio.sleep(2)
    assert (await page.evaluate(sound))["playing"] is False
    fire = confirmed_fire()
    panel.backend.state = fire.model_copy(update={"alarms": [*fire.alarms, fire_alarm(
        rule="explosion.h2_alarm", subject="h2-3f.h2", severity="major", title="Hydrogen high",
        value=27.5, unit="%LEL", limit="≥ 25 %LEL")]})
    assert (await sound_until(page, "playing", True))["pattern"] == "major"


async def test_confirmed_fire_fits_a_phone(panel: Running, browser: Browser) -> None:
    panel.backend.state = confirmed_fire()
    page = await open_page(browser, panel.url, **PHONE)
    cards = page.get_by_test_id("alarm-list").get_by_test_id("alarm")
    await expect(cards).to_have_count(5)
    await page.screenshot(path=shot("fire-phone.png"))
    for i in range(5):
        box = await cards.nth(i).bounding_box()
        assert box is not None
        assert box["y"] >= 0 and box["y"] + box["height"] <= 844, (i, box)
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (i, box)
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    # the acknowledge buttons are reachable too, and large enough for a thumb
    for i in range(5):
        button = await cards.nth(i).get_by_test_id("ack-button").bounding_box()
        assert button is not None and button["height"] >= 44
        assert button["y"] + button["height"] <= 844
    panel.backend.state = confirmed_fire(acked=True)
    await expect(cards.first.get_by_test_id("alarm-ack")).to_be_visible()
    await page.screenshot(path=shot("fire-phone-acked.png"))
    await page.screenshot(path=shot("fire-phone-full.png"), full_page=True)


async def test_cards_say_where_what_and_who(panel: Running, browser: Browser) -> None:
    panel.backend.state = confirmed_fire(acked=True)
    page = await open_page(browser, panel.url)
    heat = page.locator('[data-testid="alarm"][data-rule="fire.heat_fixed"]')
    await expect(heat.get_by_test_id("alarm-room")).to_have_text("Transmission room, 3rd floor")
    await expect(heat.get_by_test_id("alarm-device")).to_have_text(" · Heat detector 1")
    await expect(heat.get_by_test_id("alarm-location")).to_have_text(" (row A, rack 3)")
    await expect(heat.get_by_test_id("alarm-value")).to_have_text("61.40 °C")
    await expect(heat.get_by_test_id("alarm-limit")).to_have_text("limit ≥ 57 °C")
    # an absolute time in the site's zone (UTC here) beside the age
    activated = time.strftime("%H:%M:%S", time.gmtime((NOW_NS - 40 * 10**9) / 1e9))
    await expect(heat.get_by_test_id("alarm-time")).to_have_text(f"since {activated}")
    await expect(heat.get_by_test_id("alarm-age")).to_have_text("40 s")
    acked = time.strftime("%H:%M:%S", time.gmtime((NOW_NS - 10 * 10**9) / 1e9))
    await expect(heat.get_by_test_id("alarm-ack")).to_have_text(
        f"Acknowledged by alice at {acked} — “fire brigade called”")
    # a coincidence reads as its condition, not as a bare number
    fire = page.locator('[data-testid="alarm"][data-rule="fire.smoke_coincidence"]')
    await expect(fire.get_by_test_id("alarm-value")).to_have_text("2 devices with smoke on")
    smoke = page.locator('[data-testid="alarm"][data-subject="smoke-3f-1.smoke"]')
    await expect(smoke.get_by_test_id("alarm-value")).to_have_text("smoke on")
    # what to do: open on a wide screen, in the pack's words
    heat_rule = shipped.packs()["fire"].rule("heat_fixed")
    assert heat_rule is not None and heat_rule.response
    await expect(heat.get_by_test_id("alarm-response-text")).to_be_visible()
    await expect(heat.get_by_test_id("alarm-response-text")).to_have_text(heat_rule.response)
    await page.screenshot(path=shot("fire-desktop-acked.png"), full_page=True)


async def test_suppress_is_in_a_dialog_and_keyboard_usable(
        panel: Running, browser: Browser) -> None:
    panel.backend.state = confirmed_fire()
    page = await open_page(browser, panel.url)
    await expect(page.get_by_test_id("alarm")).to_have_count(5)
    await expect(page.get_by_test_id("suppress-form")).to_be_hidden()
    await page.get_by_test_id("suppress-open").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_test_id("suppress-dialog")).to_be_visible()
    await page.screenshot(path=shot("suppress-dialog.png"))
    await page.keyboard.press("Escape")
    await expect(page.get_by_test_id("suppress-dialog")).to_be_hidden()
    # every card's buttons are named for the screen reader and reachable by Tab
    names = await page.eval_on_selector_all(
        '[data-testid="ack-button"]', "bs => bs.map(b => b.getAttribute('aria-label'))")
    assert names[0] == "Acknowledge Fire confirmed — two independent smoke detectors in the room"
    reached = set()
    for _ in range(40):
        await page.keyboard.press("Tab")
        reached.add(await page.evaluate("document.activeElement.dataset.testid || ''"))
    assert {"ack-button", "shelve-button", "ack-all"} <= reached


def _luminance(rgb: tuple[int, int, int]) -> float:
    def channel(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(fg: tuple[int, int, int], bg: tuple[int, int, int]) -> float:
    hi, lo = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


async def test_text_contrast(panel: Running, browser: Browser) -> None:
    """WCAG AA (4.5:1) for the text of cards, banners and chips against their background."""
    panel.backend.state = confirmed_fire(acked=True)
    page = await open_page(browser, panel.url, reduced_motion="reduce")
    await expect(page.get_by_test_id("alarm")).to_have_count(5)
    pairs = await page.evaluate("""(() => {
      const rgb = (s) => s.match(/\\d+/g).slice(0, 3).map(Number);
      const bgOf = (e) => { for (; e; e = e.parentElement) {
        const c = getComputedStyle(e).backgroundColor;
        if (c && !c.startsWith('rgba(0, 0, 0, 0)')) return rgb(c); } return [15, 20, 25]; };
      const sel = ['[data-testid=alarm-title]', '[data-testid=alarm-room]',
        '[data-testid=alarm-value]', '[data-testid=alarm-limit]', '[data-testid=alarm-time]',
        '[data-testid=alarm-ack]', '[data-testid=alarm-severity]', '[data-testid=strip-output]',
        '[data-testid=ack-button]', '.hint', '[data-testid=first-out]'];
      return sel.flatMap((s) => Array.from(document.querySelectorAll(s)).filter(
        (e) => e.offsetParent !== null).slice(0, 3).map((e) =>
        [s, rgb(getComputedStyle(e).color), bgOf(e)]));
    })()""")
    assert len(pairs) > 10
    low = [(s, fg, bg, round(contrast(tuple(fg), tuple(bg)), 2)) for s, fg, bg in pairs
           if contrast(tuple(fg), tuple(bg)) < 4.5]
    assert low == []


async def _log_in(page: Page, user: str, password: str) -> None:
    await page.get_by_test_id("login-open").click()
    await page.get_by_test_id("login-user").fill(user)
    await page.get_by_test_id("login-password").fill(password)
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("current-user")).to_contain_text(user)


async def test_a_view_only_user_is_offered_no_action_it_would_be_refused(
        browser: Browser) -> None:
    """A guard with `may: []` (view-only) saw every button and got 403 for each (the console
    audit's leftover): the page offers a user only what its `may:` allows; not logged in,
    everything is offered (the login is asked for)."""
    from gateway.config.site import PanelUser
    from tests.panel.conftest import HASH, PASSWORD, USER, _running, panel_settings

    guard = PanelUser(name="guard", password_hash=HASH, may=())
    settings = replaced(panel_settings(), users=(PanelUser(name=USER, password_hash=HASH), guard))
    async for running in _running(settings):
        running.backend.state = confirmed_fire()
        page = await open_page(browser, running.url)
        await expect(page.get_by_test_id("alarm")).to_have_count(5)
        await expect(page.get_by_test_id("ack-button").first).to_be_visible()  # not logged in
        await _log_in(page, "guard", PASSWORD)
        for testid in ("ack-button", "shelve-button"):
            await expect(page.get_by_test_id(testid)).to_have_count(5)
            for button in await page.get_by_test_id(testid).all():
                await expect(button).to_be_hidden()
        await expect(page.get_by_test_id("ack-all")).to_be_hidden()
        await expect(page.get_by_test_id("suppress-open")).to_be_hidden()
        await page.get_by_test_id("logout").click()
        await _log_in(page, USER, PASSWORD)  # every right: every button
        await expect(page.get_by_test_id("ack-button").first).to_be_visible()
        await expect(page.get_by_test_id("shelve-button").first).to_be_visible()
        await expect(page.get_by_test_id("ack-all")).to_be_visible()
        await expect(page.get_by_test_id("suppress-open")).to_be_visible()
