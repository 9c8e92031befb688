"""A confirmed fire on a simulated room, through the real gateway: one incident holding the
samples at poll resolution from before the trigger (also the small changes the uplink's
deadband drops), the acknowledgement with its actor and note, the siren's write and read-back,
the config identity and health; saved 0600 in the state directory. Then the incident report of
that same fire: the `roomwarden incident` commands and the exported HTML in headless Chromium.

One fire serves both tests (a module-scoped rig: they only read the incident and ask the
running gateway), so its ~20 s of real time are spent once."""

from __future__ import annotations

import asyncio
import itertools
import os
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.clock import ManualClock
from gateway.field.sample import Quality, Sample
from gateway.recorder.report import alarm_bands
from gateway.recorder.store import IncidentStore
from gateway.uplink.exception_filter import ExceptionFilter, ExceptionPolicy
from tests.recorder.conftest import (
    ACK_NOTE,
    FIRE,
    MAX_DURATION,
    POLL,
    PRE,
    Rig,
    confirmed_fire,
    running_rig,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")
"""The tests run on the loop of the module's gateway (it answers the control socket)."""

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = os.environ.get("INCIDENT_SCREENSHOT")
"""Set to a path to keep the screenshot (tests/recorder writes it to tmp otherwise)."""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fire(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Rig, str]]:
    """The running rig after `confirmed_fire`, and the closed incident's id."""
    async with running_rig(tmp_path_factory.mktemp("fire")) as rig:
        yield rig, await confirmed_fire(rig)


async def roomwarden(*args: str) -> subprocess.CompletedProcess[str]:
    """`roomwarden incident ARGS` in its own process (off the event loop: the gateway under
    test answers on the control socket meanwhile)."""
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "gateway", "incident", *args], cwd=REPO,
        capture_output=True, text=True, timeout=60)


async def test_a_confirmed_fire_leaves_one_incident_with_the_evidence(
        fire: tuple[Rig, str]) -> None:
    rig, incident_id = fire
    gateway = rig.gateway
    store = IncidentStore(rig.state_dir / "incidents")
    assert store.ids() == [incident_id]
    path = store.path_of(incident_id)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    record = store.load(incident_id)
    trigger = record["trigger"]
    assert (trigger["rule"], trigger["subject"], trigger["severity"]) == (*FIRE, "critical")
    # the single detectors' alarms (major) before it are part of the record
    assert {e["subject"] for e in record["events"] if e["rule"] == "fire.smoke_detector"} == {
        "smoke-1.alarm", "smoke-2.alarm"}
    fired = [e for e in record["events"] if (e["rule"], e["subject"]) == FIRE]
    assert fired[0]["state"] == "active_unacknowledged" and fired[0]["severity"] == "critical"
    # the latched fire alarm stays active (acknowledged) after the detectors reset: the
    # incident was kept open while it was, up to its cap
    assert fired[-1]["state"] == "active_acknowledged"
    assert record["until_ns"] == trigger["ts"] + int(MAX_DURATION * 1e9)
    assert record["room"] == "tx" and record["gateway"] == "gw-rec"
    assert record["config"]["sha256"] == gateway.config_sha256
    assert record["health"]["at_trigger"]["buses"][0]["id"] == "rs485"
    trigger_ms = trigger["ts"] // 1_000_000

    # samples at poll resolution from `pre` before the trigger, of every point of the room
    temps = record["points"]["th-1.temperature"]
    before = [t for t in temps["ts"] if t < trigger_ms]
    assert before[0] <= trigger_ms - (PRE - 1.0) * 1000
    gaps = [b - a for a, b in itertools.pairwise(before)]
    assert max(gaps) < POLL * 1000 * 2.5, gaps  # every poll, none thinned out
    assert len(before) >= PRE / POLL - 2
    assert set(temps["q"]) == {"g"}
    assert temps["ts"][-1] >= record["until_ns"] // 1_000_000 - 2 * POLL * 1000  # to the end
    assert {"smoke-1.alarm", "smoke-2.alarm", "do-1.do1"} <= set(record["points"])
    smoke = record["points"]["smoke-1.alarm"]
    assert smoke["v"][0] is False and True in smoke["v"]

    # the uplink's deadband (0.5 °C for temperature) would have sent a fraction of them
    uplink = ExceptionFilter(ExceptionPolicy(deadband_by_quantity={"temperature": 0.5}),
                             ManualClock(), quantity_of=lambda point: "temperature")
    samples = [Sample("th-1.temperature", v, t * 1_000_000, Quality.GOOD)
               for t, v in zip(temps["ts"], temps["v"], strict=True)]
    sent = sum(len(uplink.filter([s])) for s in samples)
    assert sent < len(samples) / 2, (sent, len(samples))
    assert len(set(temps["v"])) > sent  # distinct values the uplink never saw are here

    # the acknowledgement with its actor and note
    acks = [e for e in record["events"] if e["state"] == "active_acknowledged"]
    assert [(e["actor"], e["note"]) for e in acks] == [
        ("alice", "checked the room: burning cable tray")]
    # the siren's writes and read-backs: on after the trigger, then off after the ack
    writes = [c for c in record["output_changes"]
              if c["output"] == "siren-tx" and c["kind"] == "write"]
    on = [c for c in writes if (c["written"], c["read_back"], c["error"]) == (True, True, None)]
    assert on and on[0]["ts"] >= trigger["ts"], writes
    assert (writes[-1]["written"], writes[-1]["read_back"]) == (False, False)
    assert writes[-1]["ts"] >= acks[0]["ts"]
    # the coil as the relay module's own polls saw it
    coil = record["points"]["do-1.do1"]
    assert True in coil["v"] and coil["v"][0] is False
    # the fire rule's binding is there (for the report)
    assert any(r["rule"] == FIRE[0] for r in record["rules"])
    assert record["until_ns"] > trigger["ts"] and record["from_ns"] < trigger["ts"]
    assert time.time_ns() >= record["until_ns"]


@pytest.mark.browser
@pytest.mark.process
@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                    reason=f"{CHROMIUM} is not installed (apt install chromium)")
async def test_the_report_shows_the_fire(fire: tuple[Rig, str], tmp_path: Path) -> None:
    """The `roomwarden incident` commands as a user runs them (separate processes, the
    gateway's state directory or its control socket), and the exported HTML in headless
    Chromium (Debian's /usr/bin/chromium): plots with labelled axes, the alarm band where the
    alarm was, the acknowledgement, the siren's on-span; printed to PDF; a screenshot kept for
    a human look."""
    from playwright.async_api import async_playwright

    rig, incident_id = fire
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
