"""A technician reads an incident while the fire is still on: the real gateway service polling a
simulated room, both smoke detectors in alarm, the siren sounding, alice acknowledging — and
`roomwarden incident show` (from the state directory and over the control socket), `incident
list` and the panel's Incidents API read the still open incident. Since the progress file
(the wear audit, W3) they showed it as it opened (one event, the samples before the trigger)
until it closed; now they show it up to its last save (saves every second here), with the
acknowledgement, the siren's writes and the samples gained since, marked `open, as of …`."""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import gateway.recorder.incidents as incidents
import tests.recorder.conftest as rig_config
from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.contract.wire import AlarmRef
from gateway.panel.server import PanelServer
from gateway.recorder.store import IncidentStore
from gateway.sim.signals import Constant
from tests.panel.conftest import panel_settings
from tests.recorder.conftest import FIRE, POLL, PRE, Rig, running_rig, until

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    """The room's rig with saves every second and an incident that may stay open 2 minutes
    (the fire is read while it burns)."""
    monkeypatch.setattr(incidents, "SAVE_EVERY", 1.0)
    monkeypatch.setattr(incidents, "COPY_EVERY", 0.25)
    site = copy.deepcopy(rig_config.SITE)
    site["incidents"]["max_duration"] = "120s"
    monkeypatch.setattr(rig_config, "SITE", site)
    async with running_rig(tmp_path) as running:
        yield running


async def roomwarden(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """`roomwarden incident ARGS` in its own process (off the loop: the gateway answers)."""
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "gateway", "incident", *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


async def get(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as r:
        assert r.status == 200, await r.text()
        return await r.json() if r.content_type == "application/json" else await r.text()


def samples_line(record: dict[str, Any]) -> str:
    count = sum(len(p["ts"]) for p in record["points"].values())
    return f"{len(record['points'])} points, {count} samples"


async def test_an_open_fire_is_read_up_to_its_last_save(rig: Rig) -> None:
    gateway, site = rig.gateway, rig.site
    keeper = gateway.recording.keeper
    assert keeper is not None
    await until(lambda: gateway.recording.recorder is not None
                and len(gateway.recording.recorder.samples("th-1.temperature"))
                >= 2 * PRE / POLL)
    site.set_signal("smoke-1.alarm", Constant(value=True))
    site.set_signal("smoke-2.alarm", Constant(value=True))
    store = IncidentStore(rig.state_dir / "incidents")
    await until(lambda: len(store.ids()) == 1)
    [incident_id] = store.ids()
    await until(lambda: site.read_point("do-1.do1") is True)  # the siren sounds
    key = AlarmKey(*FIRE)
    await until(lambda: gateway.core.alarms.get(key).state is AlarmState.ACTIVE_UNACKNOWLEDGED)
    assert gateway.acknowledge([AlarmRef(rule=FIRE[0], subject=FIRE[1])], "alice",
                               "checked the room: burning cable tray") == 1
    await until(lambda: site.read_point("do-1.do1") is False)  # silenced by the ack
    saves = keeper.saved
    await until(lambda: keeper.saved >= saves + 2, 30)  # two more saves, still open
    assert keeper.open and store.progress_path_of(incident_id).exists()
    as_opened = store.load(incident_id)  # the record file: what it held when it opened
    assert as_opened["status"] == "open"
    assert not any(e["actor"] == "alice" for e in as_opened["events"])
    opened_line = samples_line(as_opened)

    for where in (("--state-dir", rig.state_dir), ("--socket", rig.control)):
        shown = (await roomwarden("show", incident_id, *where)).stdout
        assert f"incident {incident_id} (open, as of " in shown, shown
        assert "by alice" in shown  # the acknowledgement, gained after it opened
        assert opened_line not in shown  # more samples than when it opened
        listed = (await roomwarden("list", *where)).stdout
        assert "[as of " in listed and incident_id in listed

    panel = PanelServer(gateway, panel_settings(), gateway.clock)
    port = await panel.start()
    try:
        url = f"http://127.0.0.1:{port}/api/incidents"
        [row] = (await get(url))["incidents"]
        assert (row["id"], row["status"]) == (incident_id, "open")
        assert row["as_of_ns"] is not None and row["events"] > as_opened["event_count"]
        report = await get(f"{url}/report?id={incident_id}")
        assert "open, as of" in report and "alice" in report
    finally:
        await panel.stop()
    assert store.load(incident_id) == as_opened  # the readers wrote nothing

    site.set_signal("smoke-1.alarm", Constant(value=False))  # the fire is out: it closes
    site.set_signal("smoke-2.alarm", Constant(value=False))
    await until(lambda: gateway.core.alarms.get(AlarmKey("fire.smoke_detector", "smoke-1.alarm")
                                               ).state is AlarmState.RETURNED_UNACKNOWLEDGED)
    gateway.commands.acknowledge_all("alice", None, "fire out")  # the detectors' own alarms
    gateway.commands.reset(AlarmRef(rule=FIRE[0], subject=FIRE[1]), "alice", "fire out")
    await until(lambda: store.load(incident_id)["status"] == "closed", 30)
    shown = (await roomwarden("show", incident_id, "--state-dir", rig.state_dir)).stdout
    assert f"incident {incident_id} (closed)" in shown and "by alice" in shown
