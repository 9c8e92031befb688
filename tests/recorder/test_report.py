"""The incident report: a confirmed fire through the real gateway, then the `roomwarden
incident` commands as a user runs them (separate processes, the gateway's state directory),
and the exported HTML in headless Chromium (Debian's /usr/bin/chromium): plots with labelled
axes, the alarm band where the alarm was, the acknowledgement, the siren's on-span; printed to
PDF; a screenshot kept for a human look."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.recorder.report import alarm_bands
from gateway.recorder.store import IncidentStore
from tests.recorder.conftest import ACK_NOTE, FIRE, Rig, confirmed_fire

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = os.environ.get("INCIDENT_SCREENSHOT")
"""Set to a path to keep the screenshot (tests/recorder writes it to tmp otherwise)."""

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} is not installed (apt install chromium)")


async def roomwarden(*args: str) -> subprocess.CompletedProcess[str]:
    """`roomwarden incident ARGS` in its own process (off the event loop: the gateway under
    test answers on the control socket meanwhile)."""
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "gateway", "incident", *args], cwd=REPO,
        capture_output=True, text=True, timeout=60)


async def test_the_report_shows_the_fire(rig: Rig, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    incident_id = await confirmed_fire(rig)
    state = str(rig.state_dir)
    listed = await roomwarden("list", "--state-dir", state)
    assert listed.returncode == 0, listed.stderr
    assert incident_id in listed.stdout and "closed" in listed.stdout
    shown = await roomwarden("show", incident_id, "--state-dir", state)
    assert shown.returncode == 0, shown.stderr
    assert "by alice" in shown.stdout and ACK_NOTE in shown.stdout
    assert "siren-tx" in shown.stdout and "read back on" in shown.stdout
    missing = await roomwarden("show", "20990101T000000Z-tx-1", "--state-dir", state)
    assert missing.returncode == 1 and "no incident" in missing.stderr
    bad = await roomwarden("show", "../x", "--state-dir", state)
    assert bad.returncode == 1 and "not an incident id" in bad.stderr
    # the same over the running gateway's control socket
    remote = await roomwarden("list", "--socket", str(rig.control))
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout == listed.stdout.replace(str(rig.state_dir / "incidents"),
                                                  f"the gateway at {rig.control}")
    via_socket = await roomwarden("show", incident_id, "--socket", str(rig.control))
    assert via_socket.returncode == 0 and via_socket.stdout == shown.stdout
    refused = await roomwarden("show", "20990101T000000Z-tx-1", "--socket", str(rig.control))
    assert refused.returncode == 1 and "no incident" in refused.stderr
    report = tmp_path / "incident.html"
    exported = await roomwarden("export", incident_id, "--html", str(report), "--state-dir", state)
    assert exported.returncode == 0, exported.stderr
    page_text = report.read_text(encoding="utf-8")
    assert "http://" not in page_text and "https://" not in page_text and "<script" not in page_text

    record = IncidentStore(rig.state_dir / "incidents").load(incident_id)
    [fire_band] = [b for b in alarm_bands(record) if (b.rule, b.subject) == FIRE]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1000, "height": 1400})
            await page.goto(report.as_uri())
            shot = Path(SCREENSHOT) if SCREENSHOT else tmp_path / "incident.png"
            await page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            plots = page.locator("svg.plot[data-point]")
            points = await plots.evaluate_all("els => els.map(e => e.dataset.point)")
            assert {"smoke-1.alarm", "smoke-2.alarm"} <= set(points)
            smoke = page.locator('svg.plot[data-point="smoke-1.alarm"]')
            box = await smoke.bounding_box()
            assert box is not None and box["width"] > 500 and box["height"] > 100
            labels = await smoke.locator("text.axis-label").all_text_contents()
            assert labels[0] == "time (UTC)" and "state" in labels[1]
            # the band of the confirmed fire, where the alarm was on the time axis
            band = smoke.locator(f'rect.alarm-band[data-rule="{FIRE[0]}"]')
            band_box = await band.bounding_box()
            assert band_box is not None and band_box["width"] > 5
            t0, t1 = float(record["from_ns"]) / 1e6, float(record["until_ns"]) / 1e6
            left, width = box["x"] + 70 * box["width"] / 900, 810 * box["width"] / 900
            expected_x = left + (fire_band.start_ms - t0) / (t1 - t0) * width
            expected_end = left + (fire_band.end_ms - t0) / (t1 - t0) * width
            assert abs(band_box["x"] - expected_x) < 3, (band_box, expected_x)
            assert abs(band_box["x"] + band_box["width"] - expected_end) < 3
            # the detector's trace is high inside the band: its path rises before it ends
            assert await smoke.locator("path.signal").get_attribute("d")
            ack = smoke.locator("line.ack")
            assert await ack.count() == 1
            ack_x = float(await ack.get_attribute("x1") or 0)
            assert 70 <= ack_x <= 880
            assert "ack alice" in (await smoke.text_content() or "")
            siren = page.locator('rect.output-on[data-output="siren-tx"]')
            assert await siren.count() >= 1
            rows = await page.locator("table.timeline tr").all_text_contents()
            assert any("alice" in r and ACK_NOTE in r for r in rows)
            pdf = await page.pdf()
            assert pdf[:5] == b"%PDF-" and len(pdf) > 10_000
        finally:
            await browser.close()
