"""A clean stop (SIGTERM, `systemctl stop`) while an evacuation drill drives the battery room's
outputs: the drills audit found the charge inhibit (`on_stop: hold` by default) left on for as
long as the gateway stayed stopped — the battery kept from charging by a drill — with no
`drill_ended` and the journal closing the drill only at the next start. Now the stop ends the
drill first: the inhibit is released, the end is journalled by the stop, a fan still under its
`min_on` keeps running (held, as for a real alarm), the siren goes to its stop state."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.drills.live import LiveDrill
from gateway.drills.model import Drill
from gateway.safety import SafetyCore
from tests.apply.conftest import running_service, until

INHIBIT, FAN, SIREN = "do-tx-01.do4", "do-tx-01.do3", "do-tx-01.do1"
"""The telecom site's charge inhibit, exhaust fan (a normally-closed contact: off = running)
and siren coils."""


async def test_a_clean_stop_ends_an_evacuation_drill_and_releases_what_it_drove(
        tmp_path: Path) -> None:
    async with running_service(tmp_path) as run:
        gw, site = run.service.gateway, run.site
        await until(lambda: site.read_point(INHIBIT) is False, 30, "inhibit off at start")
        drill = Drill.model_validate({
            "drill": "h2_evacuation", "title": "Hydrogen evacuation drill", "room": "batt-3f",
            "duration": "10m", "steps": [{"at": "1s", "set": {"h2-batt-01.h2": 30.0}}],
            "expect": [], "allow": ["*"]})
        gw.core.drill = LiveDrill(drill, gw.core, evacuation=True, actor="lead")
        await until(lambda: site.read_point(INHIBIT) is True, 30, "the drill inhibits")
        assert site.read_point(SIREN) is True and site.read_point(FAN) is False  # running
        assert not any(not v.drill for v in gw.core.alarms.active())  # only the drill's
        run.service.stop()
        await until(lambda: gw._group is None, 30, "the gateway stopped")
        assert site.read_point(INHIBIT) is False, "the drill's charge inhibit released"
        assert site.read_point(SIREN) is False  # its stop state
        assert site.read_point(FAN) is False, "the fan runs on: min_on, held at stop"
    again = SafetyCore(gw.loaded, gw.clock, tmp_path / "state" / "alarms.sqlite")
    try:
        marks = [(e.note, e.actor) for e in again.alarms.events_since(0, limit=10_000)
                 if e.rule == "$drill"]
        assert len(marks) == 2 and marks[1][0] == "ended: the gateway stopped", marks
        assert not again.alarms.active()
    finally:
        again.close()


QUIET_DRILL = """\
drill: quiet_site
title: Smoke drill on a site polled every 30 s
room: tx-3f
duration: {duration}
steps:
  - at: 1s
    set: {{smoke-tx-01.alarm: true, smoke-tx-02.alarm: true}}
expect: []
allow: ["*"]
"""


async def test_a_drill_on_a_quiet_site_ends_and_stops_on_time(tmp_path: Path) -> None:
    """The drills audit's suspicion, confirmed: the drill's own times (its end, a stop asked
    for, its engine's timers) were not among the deadlines the evaluator sleeps to, so on a
    site whose devices are polled every 30 s a 2 s drill ended at the next poll, up to 30 s
    late, and `--stop` waited for one (10 s, then answered that the drill had not ended)."""

    def quiet(data: dict[str, object]) -> None:
        for device in data["devices"]:  # type: ignore[attr-defined]
            device["poll_interval"] = "30s"

    async with running_service(tmp_path, change=quiet) as run:
        drills = run.service.drills
        await asyncio.sleep(1.0)  # every device polled (running_service): the next in ~29 s
        answer = await drills.answer({"action": "start", "actor": "lead",
                                      "file": QUIET_DRILL.format(duration="2s")})
        assert answer["ok"] is True, answer
        session = drills.session
        assert session is not None
        await until(lambda: session.finished, 8, "the 2 s drill ended by its duration")
        assert session.outcome.end_reason is not None and "duration" in session.outcome.end_reason

        answer = await drills.answer({"action": "start", "actor": "lead",
                                      "file": QUIET_DRILL.format(duration="10m")})
        assert answer["ok"] is True, answer
        began = asyncio.get_running_loop().time()
        answer = await drills.answer({"action": "stop", "actor": "lead"})
        assert answer["ok"] is True, answer
        assert asyncio.get_running_loop().time() - began < 5.0  # not the 10 s STOP_WAIT
