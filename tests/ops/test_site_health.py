"""`/healthz` and `roomwarden status` keep service health and site alarm state apart, and never
say "ok" beside an active critical alarm or a flood: a real gateway service polling the
simulated equipment room, its panel over HTTP, and the real `roomwarden status` command over the
control socket."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from gateway.localservices import free_port
from gateway.sim.signals import Constant
from tests.apply.conftest import Running, running_service, until

FIRE = "fire.smoke_coincidence"


async def healthz(port: int) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as client, \
            client.get(f"http://127.0.0.1:{port}/healthz") as r:
        return r.status, await r.json()


async def status_command(run: Running, *extra: str) -> str:
    """`roomwarden status` as a technician types it, in its own process."""
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "gateway", "status", "--control",
                         str(run.control), *extra],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_service_health_and_site_alarm_state_are_said_apart(tmp_path: Path) -> None:
    port = free_port()

    def site(data: dict[str, Any]) -> None:
        data["panel"] = {"enabled": True, "bind": "127.0.0.1", "port": port}
        data["alarms"] = {"flood_count": 2, "flood_window": "10m"}
        data.setdefault("rules", {}).setdefault("parameters", []).extend(  # every rule evaluated
            {"rule": rule, "device": "meter-ac-main", "set": {"rating_a": 100}}
            for rule in ("power.branch_overload", "power.branch_load_high"))

    async with running_service(tmp_path, change=site) as run:
        gw = run.service.gateway
        await asyncio.wait_for(gw.panel_ready.wait(), 10)

        # a quiet site: ok, and it says what is ok
        code, body = await healthz(port)
        assert (code, body["ok"], body["status"], body["service"]) == (200, True, "ok", "ok")
        assert body["site"]["status"] == "normal" and body["site"]["active"] == 0
        assert body["summary"] == "Service: ok · Site: normal — no alarm active"
        text = await status_command(run)
        assert re.search(r"^  Service: ok\b", text, re.M), text
        assert re.search(r"^  Site: +normal — no alarm active$", text, re.M), text

        # a confirmed fire (critical) and a flood (three activations, flood_count 2)
        run.site.set_signal("smoke-tx-01.alarm", Constant(value=True))
        run.site.set_signal("smoke-tx-02.alarm", Constant(value=True))
        await until(lambda: gw.core.alarms.flood.active
                    and any(a.key.rule == FIRE for a in gw.core.alarms.active()), 30,
                    "the fire alarm and the flood")

        code, body = await healthz(port)
        # the service still works: 200 (no monitor restarts a gateway during a fire) …
        assert (code, body["ok"], body["service"]) == (200, True, "ok")
        # … but nothing says a bare "ok" beside the alarm
        assert body["status"] == "alarm"
        assert body["site"]["status"] == "alarm"
        assert (body["site"]["critical"], body["site"]["flood"]) == (1, True)
        assert body["summary"].startswith("Service: ok · Site: ALARM — 1 critical active, "
                                          "flood"), body["summary"]
        assert all(c["status"] == "ok" for c in body["checks"].values()), body["checks"]

        text = await status_command(run)
        lines = text.splitlines()
        assert lines[0].startswith("✗ "), lines[0]
        assert re.search(r"^  Service: ok\b", text, re.M), text
        assert re.search(r"^  Site: +ALARM — 1 critical active, flood", text, re.M), text
        assert not re.search(r"Status:\s*ok", text), text
        raw = json.loads(await status_command(run, "--json"))
        assert raw["health"]["status"] == "alarm" and raw["health"]["service"] == "ok"
        assert raw["health"]["site"]["status"] == "alarm"
