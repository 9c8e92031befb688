"""A config apply that moves an output to another relay or drops it while the output is on
(the output chain audit, F4): the old coil is switched off through the new config's bus loop,
read back, logged (`output_released_by_config`) and journalled on the old output (`$output`,
`released by config vN: …`) — after the new config's outputs are written (make before break).
The same for a candidate that added an output and is rolled back after its trial; a module that
does not answer is written again on its back-off until it does; a line the new config does not
reach is reported and released by the next apply that reaches it. Real service, simulated
devices (pymodbus RTU servers on pseudo-terminals) polled over the wire."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.alarms.events import OUTPUT_RULE
from gateway.config.loader import load_gateway_config
from gateway.daemon import Gateway
from gateway.sim.faults import Fault, FaultMode
from gateway.sim.signals import Constant
from tests.apply.conftest import Running, ask, device, edit_config, until

RELAY = "do-tx-01"
SIREN, STROBE = "siren-3f", "strobe-3f"


def output(data: dict[str, Any], output_id: str) -> dict[str, Any]:
    return next(o for o in data["outputs"] if o["id"] == output_id)


def siren_moved_strobe_dropped(data: dict[str, Any]) -> None:
    output(data, SIREN)["point"] = "do5"  # re-wired to relay 5
    data["outputs"] = [o for o in data["outputs"] if o["id"] != STROBE]


async def fire(running: Running) -> None:
    site = running.site
    site.set_signal("smoke-tx-01.alarm", Constant(value=True))
    site.set_signal("smoke-tx-02.alarm", Constant(value=True))
    await until(lambda: site.read_point(f"{RELAY}.do1") is True
                and site.read_point(f"{RELAY}.do2") is True, 20, "siren and strobe on")


def notes(gw: Gateway, output_id: str) -> list[str]:
    return [e.note or "" for e in gw.core.alarms.events_since(0)
            if e.rule == OUTPUT_RULE and e.subject == output_id]


def writes(running: Running, point: str, after: int) -> list[tuple[float, Any]]:
    """The writes to a relay after the module's first `after` log entries."""
    return [(e.t, e.value) for e in running.site.log(RELAY)[after:]
            if e.kind == "write" and e.point == f"{RELAY}.{point}"]


async def apply_directly(running: Running, change: Any, version: int) -> None:
    """`Gateway.reconfigure` as gateway.flashing.apply calls it (no trial: the line may be
    unreachable on purpose)."""
    path = running.tmp / f"v{version}.yaml"
    path.write_text(edit_config(running.text, change), encoding="utf-8")
    await running.service.gateway.reconfigure(load_gateway_config(path), version=version,
                                              sha256="0" * 64)


async def test_an_apply_switches_off_the_coils_it_no_longer_drives(
        running: Running, caplog: pytest.LogCaptureFixture) -> None:
    """The audit's s2: the siren re-wired from relay 1 to relay 5 and the strobe dropped
    during a fire left relays 1 and 2 energised for good."""
    caplog.set_level(logging.INFO, logger="roomwarden.actions")
    gw, site = running.service.gateway, running.site
    await fire(running)
    before = len(site.log(RELAY))
    answers = await ask(running.control, {"op": "apply", "author": "dave", "config":
                                          edit_config(running.text, siren_moved_strobe_dropped)})
    assert answers[-1]["result"]["state"] == "applied", answers[-1]
    version = answers[-1]["result"]["active_version"]
    await until(lambda: site.read_point(f"{RELAY}.do1") is False
                and site.read_point(f"{RELAY}.do2") is False, 20, "the old coils off")
    await until(lambda: not gw.releases.pending, 5, "the releases read back")
    assert site.read_point(f"{RELAY}.do5") is True, "the fire sounds the siren's new relay"
    off1, off2 = writes(running, "do1", before), writes(running, "do2", before)
    assert [v for _, v in off1] == [False] and [v for _, v in off2] == [False]
    [(on5, _)] = writes(running, "do5", before)
    assert on5 <= off1[0][0], "the new relay on before the old one off (make before break)"
    for output_id, point in ((SIREN, "do1"), (STROBE, "do2")):
        assert (f"event=output_released_by_config output={output_id} device={RELAY} "
                f"point={point} coil=False read_back=True version={version}") in caplog.text
        assert notes(gw, output_id)[-1] == (f"released by config v{version}: {RELAY}.{point} "
                                            "switched off (read back off)")
    assert gw.releases.pending == {}
    # nothing drives the old relays now: rounds and polls go on, they stay off, unwritten
    rounds, cycles = gw.evaluations, sum(loop.stats.cycles for loop in gw.bus_loops)
    await until(lambda: gw.evaluations > rounds + 3
                and sum(loop.stats.cycles for loop in gw.bus_loops) > cycles + 10, 20,
                "rounds and polls under the new config")
    assert writes(running, "do1", before) == off1 and writes(running, "do2", before) == off2
    assert site.read_point(f"{RELAY}.do1") is False and site.read_point(f"{RELAY}.do2") is False


async def test_a_rolled_back_candidate_releases_the_output_it_added(
        running: Running, caplog: pytest.LogCaptureFixture) -> None:
    """A candidate that adds a second strobe (relay 6) switches it on for the fire during its
    trial; it fails its health check and is rolled back: relay 6 goes off."""
    caplog.set_level(logging.INFO, logger="roomwarden.actions")
    gw, site = running.service.gateway, running.site
    await fire(running)

    def extra_strobe_and_a_wrong_unit(data: dict[str, Any]) -> None:
        data["outputs"].append({"id": "strobe-extra", "role": "strobe", "device": RELAY,
                                "point": "do6", "rooms": ["tx-3f"]})
        device(data, "th-tx-a03")["unit"] = 99  # nothing answers there: the trial fails

    seen: list[Any] = []

    async def watch() -> None:
        await until(lambda: site.read_point(f"{RELAY}.do6") is True, 20,
                    "the candidate's strobe on during the trial")
        seen.append(True)

    import asyncio

    watcher = asyncio.create_task(watch())
    answers = await ask(running.control, {"op": "apply", "author": "bob", "config": edit_config(
        running.text, extra_strobe_and_a_wrong_unit)})
    await watcher
    assert answers[-1]["result"]["state"] == "rolled_back" and seen == [True]
    await until(lambda: site.read_point(f"{RELAY}.do6") is False, 20, "relay 6 off")
    await until(lambda: not gw.releases.pending, 5, "the release read back")
    assert site.read_point(f"{RELAY}.do1") is True and site.read_point(f"{RELAY}.do2") is True
    assert "event=output_released_by_config output=strobe-extra" in caplog.text
    assert notes(gw, "strobe-extra")[-1] == (f"released by config v{gw.config_version}: "
                                             f"{RELAY}.do6 switched off (read back off)")


async def test_a_module_that_does_not_answer_is_released_once_it_does(
        running: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="roomwarden.actions")
    gw, site = running.service.gateway, running.site
    await fire(running)
    site.set_fault(RELAY, Fault(mode=FaultMode.EXCEPTION))
    await apply_directly(running, siren_moved_strobe_dropped, 7)
    await until(lambda: "event=output_release_failed output=strobe-3f" in caplog.text, 20,
                "the release failing")
    assert "retry_in=5s" in caplog.text  # the strobe's back-off
    assert notes(gw, STROBE)[-1].startswith(f"released by config v7: {RELAY}.do2 could not be "
                                            "switched off (")
    assert {o.driven.output.id for o in gw.releases.pending.values()} == {SIREN, STROBE}
    site.set_fault(RELAY, Fault())
    await until(lambda: not gw.releases.pending, 30, "both released on the back-off")
    assert site.read_point(f"{RELAY}.do1") is False and site.read_point(f"{RELAY}.do2") is False
    assert notes(gw, STROBE)[-1] == (f"released by config v7: {RELAY}.do2 switched off (read "
                                     "back off) after 1 failed tries")


async def test_a_line_the_new_config_does_not_reach_is_reported_then_released(
        running: Running, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.INFO, logger="roomwarden.actions")
    gw, site = running.service.gateway, running.site
    await fire(running)

    def elsewhere(data: dict[str, Any]) -> None:
        siren_moved_strobe_dropped(data)
        bus = next(b for b in data["buses"] if b["id"] == "rs485-env")
        bus["port"] = str(tmp_path / "no-such-port")

    await apply_directly(running, elsewhere, 3)
    assert ("event=output_release_unreachable output=strobe-3f device=do-tx-01 point=do2 "
            "bus=rs485-env version=3") in caplog.text
    assert notes(gw, STROBE)[-1] == (
        f"released by config v3: {RELAY}.do2 not switched off: no bus of this config reaches "
        "bus rs485-env's line; it may still be on — switch it off at the module")
    assert site.read_point(f"{RELAY}.do2") is True
    await apply_directly(running, siren_moved_strobe_dropped, 4)  # the line back
    await until(lambda: not gw.releases.pending, 20, "released by the next apply")
    # (relay 5 and the rest, which config v3 drove on a line that never answered, are not
    # taken for coils it may have left on)
    assert site.read_point(f"{RELAY}.do1") is False and site.read_point(f"{RELAY}.do2") is False
    assert notes(gw, STROBE)[-1] == (f"released by config v3: {RELAY}.do2 switched off (read "
                                     "back off)")


async def test_a_dropped_output_held_until_reset_keeps_its_hold_in_the_journal(
        tmp_path: Path) -> None:
    """A strobe that does not restore on clear, held on by the fire, dropped by an apply: its
    relay goes off, and the journal keeps the hold (the release note says so) — a config
    that drives the strobe again holds it on until an operator resets it."""
    from tests.apply.conftest import running_service

    def held_strobe(data: dict[str, Any]) -> None:
        output(data, STROBE)["restore_on_clear"] = False

    async with running_service(tmp_path, change=held_strobe) as run:
        gw, site = run.service.gateway, run.site
        await fire(run)
        await until(lambda: STROBE in gw.core.alarms.output_holds(), 10, "the strobe held")
        await apply_directly(run, lambda data: data.update(outputs=[
            o for o in data["outputs"] if o["id"] != STROBE]), 2)
        await until(lambda: site.read_point(f"{RELAY}.do2") is False, 20, "relay 2 off")
        await until(lambda: not gw.releases.pending, 5, "the release read back")
        assert notes(gw, STROBE)[-1] == (
            f"released by config v2: {RELAY}.do2 switched off (read back off); its hold until "
            "reset stays journalled: a config that drives it again switches it on until an "
            "operator resets it")
        assert STROBE in gw.core.alarms.output_holds()
        await apply_directly(run, lambda data: None, 3)  # the strobe back
        assert gw.core.planner.held() >= {STROBE}
        await until(lambda: site.read_point(f"{RELAY}.do2") is True, 20, "held on again")
