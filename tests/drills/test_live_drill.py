"""A live drill on a running gateway (issue 12 part 4), all real: the telecom site simulated on
loopback and ptys, `roomwarden run` as a process with its panel and an uplink to a real
Mosquitto, `roomwarden drill --live` as a process on its control socket, the operator's
acknowledgement signed and sent by `roomwarden ack` over MQTT.

What must hold: the drill's alarms are on the panel's /api/state marked drill (and the banner
says a drill runs); in a silent drill the siren coil is never written (the simulator's coil
write log); a real smoke alarm during the drill ends it at once and sounds the siren; the
evaluation lists who acknowledged each drill alarm and how long it took; the journal, the
uplink and the incident record carry the drill flag. An evacuation drill writes the siren
coil, shows its banner and DRILL-tagged cards in headless Chromium, and `--stop` ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.config.loader import load_gateway_config
from gateway.localservices import free_port
from gateway.sim.signals import Constant
from gateway.sim.site import SimulatedSite
from tests.apply.test_service_process import GatewayProcess, devices_online
from tests.fixtures.operators import Keys, keys
from tests.fixtures.services import Broker, Subscriber, broker
from tests.panel.test_browser import ARGS, CHROMIUM

__all__ = ["broker", "keys"]  # fixtures

pytestmark = [pytest.mark.slow, pytest.mark.process, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "firmware_configs" / "telecom_equipment_room.yaml"
ROOMWARDEN = Path(sys.executable).with_name("roomwarden")
SIREN = "do-tx-01.do1"
SMOKE = ("smoke-tx-01.alarm", "smoke-tx-02.alarm")
DRILL_ALARMS = ("fire.smoke_coincidence@drill:tx-3f",
                "fire.smoke_detector@drill:smoke-tx-01.alarm",
                "fire.smoke_detector@drill:smoke-tx-02.alarm")
OWNER = "Zhang Wei (NOC)"
USER = pwd.getpwuid(os.getuid()).pw_name
"""Who the control socket's kernel check names beside a drill's actor (`lead as root`)."""

DRILL = """\
drill: tx_fire_drill_test
title: Fire drill in the equipment room (test)
room: tx-3f
duration: 2m
steps:
  - at: 2s
    set: {smoke-tx-01.alarm: true, smoke-tx-02.alarm: true}
expect:
  - {alarm: fire.smoke_coincidence, subject: tx-3f, after: 2s, within: 8s}
  - {output: siren-3f, turns: on, after: 2s, within: 8s}
forbid: ["*"]
allow: ["fire.smoke_detector@*"]
"""


async def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


@dataclass
class Scene:
    site: SimulatedSite
    gateway: GatewayProcess
    state: Path
    panel_port: int
    broker: Broker
    gateway_id: str
    site_id: str

    @property
    def control(self) -> Path:
        return self.gateway.control

    async def panel(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.panel_port}/api/state"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http, \
                http.get(url) as response:
            assert response.status == 200
            body: dict[str, Any] = await response.json()
            return body

    async def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.panel_port}/metrics"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http, \
                http.get(url) as response:
            assert response.status == 200
            return await response.text()

    def settled(self) -> bool:
        """The gateway wrote the siren's off state at its start, and nothing since for 2 s:
        from here on a write of the siren coil has a reason."""
        writes = self.siren_writes(0.0)
        return bool(writes) and time.monotonic() - writes[-1].t > 2.0

    def siren_writes(self, since: float) -> list[Any]:
        return [e for e in self.site.log() if e.kind == "write" and e.point == SIREN
                and e.t >= since]


@contextlib.asynccontextmanager
async def scene(tmp_path: Path, broker: Broker, keys: Keys) -> AsyncIterator[Scene]:
    """The simulated telecom site and `roomwarden run` on it (panel, uplink, operator keys)."""
    async with SimulatedSite(load_gateway_config(SITE)) as site:
        factory = site.write_config(tmp_path / "gateway.yaml")
        data = yaml.safe_load(factory.read_text(encoding="utf-8"))
        port = free_port()
        data["panel"] = {"enabled": True, "bind": "127.0.0.1", "port": port}
        data["uplink"] = {"broker": "127.0.0.1", "port": broker.port,
                          "reconnect_min": "100ms", "reconnect_max": "500ms"}
        data["operators"] = keys.operators()
        factory.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        state = tmp_path / "state"
        gateway = GatewayProcess(factory, state, tmp_path / "control.sock")
        gateway.start()
        try:
            await until(lambda: devices_online(gateway.status()), 60,
                        "the gateway up, devices online")
            scene = Scene(site, gateway, state, port, broker, data["gateway"]["id"],
                          data["gateway"]["site"])
            await until(scene.settled, 30, "the siren's first write, then quiet")
            yield scene
        except AssertionError as exc:  # what the gateway said, with the failure
            log = gateway.log.read_text(encoding="utf-8", errors="replace")
            raise AssertionError(f"{exc}\n--- gateway log (end) ---\n{log[-6000:]}") from exc
        finally:
            gateway.stop()


async def roomwarden(*args: str, timeout: float = 60) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(ROOMWARDEN), *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def ack(s: Scene, keys: Keys, *alarms: str) -> tuple[int, str]:
    flags = [a for alarm in alarms for a in ("--alarm", alarm)]
    return await roomwarden(
        "ack", *flags, "--note", "drill: on my way", "--gateway", s.gateway_id, "--site",
        s.site_id, "--broker", f"mqtt://127.0.0.1:{s.broker.port}", "--key",
        str(keys.zhang.private_path), "--timeout", "20s")


def drill_alarms(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{a['rule']}@{a['subject']}": a for a in state["alarms"] if a.get("drill")}


async def test_a_silent_live_drill_ended_by_a_real_fire(tmp_path: Path, broker: Broker,
                                                       keys: Keys) -> None:
    drill_file = tmp_path / "fire_drill.yaml"
    drill_file.write_text(DRILL, encoding="utf-8")
    async with scene(tmp_path, broker, keys) as s:
        uplink = Subscriber(broker.port, f"roomwarden/{s.site_id}/{s.gateway_id}/alarms")
        try:
            began = time.monotonic()
            cli = asyncio.create_task(roomwarden(
                "drill", "--live", str(drill_file), "--socket", str(s.control), "--actor",
                "drill lead", timeout=240))

            # the drill's alarms on the panel, marked drill, under a drill banner
            async def shown() -> dict[str, Any] | None:
                state = await s.panel()
                return state if set(DRILL_ALARMS) <= set(drill_alarms(state)) else None

            deadline = time.monotonic() + 30
            while (state := await shown()) is None:
                assert time.monotonic() < deadline, "drill alarms never on the panel"
                assert not cli.done(), (await cli)[1]
                await asyncio.sleep(0.2)
            assert state["drill"]["drill"] == "tx_fire_drill_test"
            assert state["drill"]["mode"] == "silent" and state["drill"]["room"] == "tx-3f"
            shown_alarms = drill_alarms(state)
            fire = shown_alarms[DRILL_ALARMS[0]]
            assert fire["state"] == "active_unacknowledged" and fire["severity"] == "critical"
            assert fire["actions"] == []  # silent: the drill alarm drives nothing
            assert not any(a["rule"] == "fire.smoke_coincidence" and not a.get("drill")
                           for a in state["alarms"]), "no real fire alarm from a drill"
            metrics = await s.metrics()  # Prometheus counts real alarms only
            assert 'roomwarden_alarms_active{severity="critical",state="active_unacknowledged"}' \
                ' 0.0' in metrics, metrics

            # the operator acknowledges the drill alarms with a signed command
            await asyncio.sleep(1.0)
            code, out = await ack(s, keys, *DRILL_ALARMS)
            assert code == 0, out
            state = await s.panel()
            assert all(a["acked_by"] == OWNER for a in drill_alarms(state).values())

            # silent: the siren coil was never written while the drill ran
            await asyncio.sleep(2.0)
            assert s.siren_writes(began) == [], s.siren_writes(began)
            assert s.site.read_point(SIREN) is False

            # a real fire: both detectors really alarm -> the drill ends, the siren sounds
            for point in SMOKE:
                s.site.set_signal(point, Constant(value=True))
            code, out = await asyncio.wait_for(cli, 60)
            await until(lambda: s.site.read_point(SIREN) is True, 20, "the siren on")
            writes = s.siren_writes(began)
            assert writes and all(w.value is True for w in writes), writes
            state = await s.panel()
            assert state["drill"] is None and drill_alarms(state) == {}
            real = [a for a in state["alarms"] if a["rule"] == "fire.smoke_coincidence"]
            assert [(a["subject"], a["state"], a["drill"]) for a in real] == [
                ("tx-3f", "active_unacknowledged", False)]
            assert "siren" in real[0]["actions"]

            # the evaluation: detection, who acknowledged and after how long, the real alarm
            assert code == 0, out
            assert "PASS  live drill tx_fire_drill_test" in out, out
            assert "a real alarm in room tx-3f" in out, out
            for alarm in DRILL_ALARMS:
                line = next(x for x in out.splitlines() if x.startswith(f"  alarm {alarm} "))
                assert f"by {OWNER} after" in line, line
            assert "held (silent drill): siren, strobe" in out, out
            incident = next(x.split()[2] for x in out.splitlines()
                            if x.startswith("incident record: "))

            # the journal and the uplink carry the drill flag
            journal = sqlite3.connect(s.state / "alarms.sqlite")
            rows = journal.execute("SELECT kind, rule, subject, drill, actor FROM events "
                                   "ORDER BY seq").fetchall()
            journal.close()
            drill_rows = [r for r in rows if r[3]]
            assert all(r[2].startswith("drill:") or r[0] == "drill" for r in drill_rows)
            assert [r[2] for r in rows if r[0] == "drill"] == ["tx_fire_drill_test"] * 2
            assert any(r[4] == OWNER and r[3] for r in rows)  # the signed acknowledge's
            # the drill's own events: its actor as given, with the user the kernel names
            assert any(r[4] == f"drill lead as {USER}" for r in rows if r[0] == "drill")
            assert not any(r[3] for r in rows if r[1] == "fire.smoke_coincidence"
                           and r[2] == "tx-3f")

            def published() -> list[dict[str, Any]]:
                return [json.loads(m.payload) for m in uplink.snapshot()]

            await until(lambda: any(e["kind"] == "drill" and "ended" in (e["note"] or "")
                                    for e in published()), 20, "the drill's end uplink")
            sent = published()
            assert all(e["drill"] for e in sent if e["subject"].startswith("drill:"))
            assert any(e["drill"] and e["actor"] == OWNER for e in sent)
            assert any(not e["drill"] and e["subject"] == "tx-3f" for e in sent)

            # the drill incident record, rendered by the incident report
            code, shown_record = await roomwarden("incident", "show", incident,
                                                  "--state-dir", str(s.state))
            assert code == 0, shown_record
            assert "live drill tx_fire_drill_test" in shown_record, shown_record
            assert f"by {OWNER} after" in shown_record, shown_record
            html_path = tmp_path / "drill.html"
            code, out = await roomwarden("incident", "export", incident, "--html",
                                         str(html_path), "--state-dir", str(s.state))
            assert code == 0, out
            page = html_path.read_text(encoding="utf-8")
            assert "DRILL — evaluation" in page and OWNER in page
            assert "time to acknowledge" in page
        finally:
            uplink.close()


@pytest.mark.browser
@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} is not installed")
async def test_an_evacuation_drill_on_the_panel_then_stopped(tmp_path: Path, broker: Broker,
                                                            keys: Keys) -> None:
    """--evacuation drives the siren for real; the panel (headless Chromium) shows the drill's
    banner and its alarm cards tagged DRILL; --stop ends it, prints the evaluation and the
    siren goes quiet."""
    from playwright.async_api import async_playwright, expect

    drill_file = tmp_path / "fire_drill.yaml"
    drill_file.write_text(DRILL, encoding="utf-8")
    async with scene(tmp_path, broker, keys) as s:
        began = time.monotonic()
        code, out = await roomwarden("drill", "--live", str(drill_file), "--evacuation",
                                     "--no-wait", "--socket", str(s.control), "--actor", "lead")
        assert code == 0, out
        assert (f"DRILL tx_fire_drill_test started in room tx-3f by lead as {USER} "
                "(evacuation)") in out
        await until(lambda: s.site.read_point(SIREN) is True, 30, "the siren on (evacuation)")
        assert [w.value for w in s.siren_writes(began)][-1] is True
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS,
                                               headless=True)
            try:
                page = await browser.new_page(viewport={"width": 390, "height": 844})
                await page.goto(f"http://127.0.0.1:{s.panel_port}/")
                banner = page.get_by_test_id("drill-banner")
                await expect(banner).to_be_visible(timeout=10_000)
                await expect(banner).to_contain_text("DRILL in progress")
                await expect(banner).to_contain_text("evacuation drill")
                card = page.locator('[data-testid="alarm"][data-subject="drill:tx-3f"]')
                await expect(card).to_be_visible(timeout=10_000)
                await expect(card.get_by_test_id("drill-tag")).to_be_visible()
                await expect(card.get_by_test_id("drill-tag")).to_have_text("DRILL")
                real = page.locator('[data-testid="alarm"][data-subject="tx-3f"]')
                await expect(real).to_have_count(0)

                code, out = await roomwarden("drill", "--live", "--stop", "--socket",
                                             str(s.control), "--actor", "lead")
                assert "ended: stopped by lead" in out, out
                assert code == 1, out  # nobody acknowledged the drill alarms: missed
                assert "missed: fire.smoke_coincidence@drill:tx-3f: not acknowledged" in out
                assert "output siren-3f written on at" in out, out
                await expect(banner).to_be_hidden(timeout=10_000)
                await expect(card).to_have_count(0, timeout=10_000)
            finally:
                await browser.close()
        await until(lambda: s.site.read_point(SIREN) is False, 20, "the siren off again")
