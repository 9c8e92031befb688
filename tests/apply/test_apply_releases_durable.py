"""Coils released by a config apply and not yet confirmed off (gateway.actions.release) are kept
in the alarm journal (meta `coil_releases`): a restart — here a crash — goes on writing them
off; while one is not confirmed its old output's `actions.output_failure` alarm is up (status,
journal, uplink), until it is confirmed or a config drives the coil again; what the journal
holds that cannot be read is logged and forgotten, never a failed start. Real service,
simulated devices (pymodbus RTU servers on pseudo-terminals) polled over the wire."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.alarms.journal import Journal
from gateway.alarms.ledger import COIL_RELEASES
from gateway.alarms.lifecycle import AlarmKey, AlarmState
from gateway.config.loader import load_gateway_config
from gateway.daemon import Gateway
from gateway.safety import OUTPUT_FAILURE_RULE
from gateway.sim.faults import Fault, FaultMode
from gateway.sim.signals import Constant
from gateway.sim.site import SimulatedSite
from gateway.supervisor import Service
from tests.apply.conftest import (
    SITE,
    Running,
    ask,
    booted,
    edit_config,
    for_tests,
    until,
)
from tests.apply.test_apply_releases import RELAY, SIREN, STROBE, fire, notes, output

STROBE_FAILURE = AlarmKey(OUTPUT_FAILURE_RULE, STROBE)


def siren_moved_strobe_dropped(data: dict[str, Any]) -> None:
    output(data, SIREN)["point"] = "do5"  # re-wired to relay 5
    data["outputs"] = [o for o in data["outputs"] if o["id"] != STROBE]


async def reconfigure(gw: Gateway, tmp: Path, text: str, version: int) -> None:
    """`Gateway.reconfigure` as gateway.flashing.apply calls it (no trial)."""
    path = tmp / f"v{version}.yaml"
    path.write_text(text, encoding="utf-8")
    await gw.reconfigure(load_gateway_config(path), version=version, sha256="0" * 64)


def alarm(gw: Gateway, key: AlarmKey) -> Any:
    return next((v for v in gw.core.alarms.active() if v.key == key), None)


def kept(gw: Gateway) -> list[dict[str, Any]]:
    text = gw.core.alarms.kept(COIL_RELEASES)
    return [] if text is None else list(json.loads(text)["releases"])


@contextlib.asynccontextmanager
async def site_and_file(tmp: Path) -> AsyncIterator[tuple[SimulatedSite, Path]]:
    """The simulated room and the installed config file polling it."""
    async with SimulatedSite(load_gateway_config(SITE)) as site:
        factory = site.write_config(tmp / "gateway.yaml")
        factory.write_text(edit_config(factory.read_text(encoding="utf-8"), for_tests),
                           encoding="utf-8")
        yield site, factory


async def test_a_pending_release_survives_a_crash_and_is_switched_off_once_the_module_answers(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The relay module does not answer when an apply moves the siren from relay 1 to relay 5
    and drops the strobe (relay 2); the gateway then crashes. The new process, on that config,
    goes on writing relays 1 and 2 off — they stayed energised for good before — and does so
    once the module answers."""
    caplog.set_level(logging.INFO, logger="roomwarden.actions")
    async with site_and_file(tmp_path) as (site, factory):
        first = Service(factory, state_dir=tmp_path / "state", control_path=tmp_path / "1.sock")
        task = asyncio.create_task(first.run())
        try:
            await until(lambda: first.gateway.evaluations > 0, 30, "the first gateway running")
            gw = first.gateway
            await fire(Running(site, first, factory, tmp_path / "1.sock", tmp_path))
            site.set_fault(RELAY, Fault(mode=FaultMode.EXCEPTION))
            moved = edit_config(factory.read_text(encoding="utf-8"), siren_moved_strobe_dropped)
            await reconfigure(gw, tmp_path, moved, 7)
            await until(lambda: all(o.error for o in gw.releases.pending.values())
                        and len(gw.releases.pending) == 2, 20, "both releases failing")
            assert {(r["output"]["id"], r["tries"]) for r in kept(gw)} == {(SIREN, 1),
                                                                           (STROBE, 1)}
        finally:
            task.cancel()  # a crash: nothing more is written
            await asyncio.gather(task, return_exceptions=True)
        assert site.read_point(f"{RELAY}.do1") is True and site.read_point(f"{RELAY}.do2") is True
        factory.write_text(moved, encoding="utf-8")  # the installed file: the config that ran

        async with booted(tmp_path, factory, "2") as second:
            gw = second.gateway
            assert "event=output_release_restored output=strobe-3f" in caplog.text
            assert {o.driven.output.id for o in gw.releases.pending.values()} == {SIREN, STROBE}
            view = alarm(gw, STROBE_FAILURE)
            assert view is not None and view.condition, "the strobe's release alarm carries on"
            await asyncio.sleep(1.5)  # polls and a try under the fault: still not off
            assert site.read_point(f"{RELAY}.do2") is True
            site.set_fault(RELAY, Fault())
            await until(lambda: site.read_point(f"{RELAY}.do1") is False
                        and site.read_point(f"{RELAY}.do2") is False, 30, "relays 1 and 2 off")
            await until(lambda: not gw.releases.pending, 5, "both releases confirmed")
            assert notes(gw, STROBE)[-1].startswith(
                f"released by config v7: {RELAY}.do2 switched off (read back off) after ")
            assert kept(gw) == []
            await until(lambda: (v := alarm(gw, STROBE_FAILURE)) is None or not v.condition,
                        10, "the strobe's release alarm cleared")


async def test_a_failing_release_raises_the_output_failure_alarm_until_it_is_confirmed(
        running: Running) -> None:
    gw, site = running.service.gateway, running.site
    await fire(running)
    site.set_fault(RELAY, Fault(mode=FaultMode.EXCEPTION))
    await reconfigure(gw, running.tmp, edit_config(running.text, siren_moved_strobe_dropped), 7)
    await until(lambda: alarm(gw, STROBE_FAILURE) is not None, 20, "the strobe's alarm")
    [status] = [a["status"] for a in await ask(running.control, {"op": "status"})]
    [line] = [a for a in status["alarms"]
              if (a["rule"], a["subject"]) == (OUTPUT_FAILURE_RULE, STROBE)]
    assert line["state"] == "active_unacknowledged" and line["severity"] == "major"
    assert line["title"] == f"Alarm output {STROBE} (strobe) does not respond"
    [raised] = [e for e in gw.core.alarms.events_since(0)
                if (e.rule, e.subject) == STROBE_FAILURE]  # journalled, and sent uplink
    assert str(raised.value).startswith(f"{RELAY}.do2, released by config v7, not confirmed "
                                        "off: ")
    assert raised.room == "batt-3f"  # the first of its rooms, as for any output failure
    site.set_fault(RELAY, Fault())
    await until(lambda: not gw.releases.pending, 30, "both released on the back-off")
    await until(lambda: not alarm(gw, STROBE_FAILURE).condition, 10, "the alarm cleared")
    assert alarm(gw, STROBE_FAILURE).state is AlarmState.RETURNED_UNACKNOWLEDGED
    [status] = [a["status"] for a in await ask(running.control, {"op": "status"})]
    assert [a["state"] for a in status["alarms"] if (a["rule"], a["subject"]) == (
        OUTPUT_FAILURE_RULE, STROBE)] == ["returned_unacknowledged"]


async def test_a_release_alarm_clears_when_a_config_drives_the_coil_again(
        running: Running, tmp_path: Path) -> None:
    """The line unreachable: the dropped strobe's relay is reported and alarmed; the next
    config drives relay 2 again (another output on it): its release goes, and the alarm."""
    gw = running.service.gateway
    await fire(running)

    def elsewhere(data: dict[str, Any]) -> None:
        siren_moved_strobe_dropped(data)
        bus = next(b for b in data["buses"] if b["id"] == "rs485-env")
        bus["port"] = str(tmp_path / "no-such-port")

    await reconfigure(gw, running.tmp, edit_config(running.text, elsewhere), 3)
    await until(lambda: alarm(gw, STROBE_FAILURE) is not None, 10, "the strobe's alarm")
    assert "no bus of config v3 reaches bus rs485-env's line" in str(
        alarm(gw, STROBE_FAILURE).value)

    def strobe_renamed(data: dict[str, Any]) -> None:
        siren_moved_strobe_dropped(data)
        data["outputs"].append({"id": "strobe-door", "role": "strobe", "device": RELAY,
                                "point": "do2", "rooms": ["tx-3f", "batt-3f"]})

    await reconfigure(gw, running.tmp, edit_config(running.text, strobe_renamed), 4)
    assert STROBE not in {o.driven.output.id for o in gw.releases.pending.values()}
    assert STROBE not in {r["output"]["id"] for r in kept(gw)}
    await until(lambda: (v := alarm(gw, STROBE_FAILURE)) is None or not v.condition, 10,
                "the strobe's alarm cleared")


def valid_release(factory: Path) -> dict[str, Any]:
    """A release of relay 6 (no output drives it) as the journal keeps it."""
    port = next(b.port for b in load_gateway_config(factory).config.buses
                if b.id == "rs485-env")
    return {"output": {"id": "strobe-old", "role": "strobe", "device": RELAY, "point": "do6",
                       "rooms": ["tx-3f"], "on_value": True, "verify": True,
                       "backoff": {"initial": 5.0, "multiplier": 2.0, "max": 300.0}},
            "bus": "rs485-env", "line": ["rtu", port], "unit": 31, "address": 5,
            "rooms": ["tx-3f"], "version": 5, "tries": 1, "error": "no reply"}


def journal_with(state: Path, value: str) -> None:
    """A journal as a crashed gateway left it, with `value` under `coil_releases`."""
    state.mkdir(parents=True, exist_ok=True)
    path = state / "alarms.sqlite"
    Journal(path).close()
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                      (COIL_RELEASES, value))


async def test_junk_in_the_kept_releases_is_logged_and_forgotten_at_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="roomwarden.actions")
    async with site_and_file(tmp_path) as (site, factory):
        good = valid_release(factory)
        junk: list[Any] = [
            {**good, "unit": "thirty-one"},
            {**good, "output": {"role": "strobe"}},
            good,
            {**good, "rooms": ["tx-3f"], "tries": 2},  # the same coil again
            "relay 7",
            {**good, "surprise": True},
        ]
        journal_with(tmp_path / "state", json.dumps({"version": 1, "releases": junk}))
        site.set_signal(f"{RELAY}.do6", Constant(value=True))
        assert site.read_point(f"{RELAY}.do6") is True
        async with booted(tmp_path, factory, "junk") as service:
            gw = service.gateway
            refused = [r.getMessage() for r in caplog.records
                       if "event=output_release_refused" in r.getMessage()]
            assert len(refused) == 5, refused
            assert "release 0 (output 'strobe-old'): unit:" in refused[0]
            assert "release 1: output.id: Field required" in refused[1]
            assert "release 3 (output 'strobe-old'): its coil is listed before" in refused[2]
            assert "release 4: " in refused[3] and "release 5 (output 'strobe-old')" \
                in refused[4]
            await until(lambda: site.read_point(f"{RELAY}.do6") is False, 20, "relay 6 off")
            await until(lambda: not gw.releases.pending, 5, "the release confirmed")
            assert notes(gw, "strobe-old")[-1] == (f"released by config v5: {RELAY}.do6 "
                                                   "switched off (read back off) after 1 "
                                                   "failed tries")
            assert kept(gw) == []  # the junk forgotten with it


@pytest.mark.parametrize("value", ["{not json", json.dumps({"version": 99, "releases": []}),
                                   "x" * 300_000])
async def test_an_unreadable_kept_value_does_not_stop_a_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, value: str) -> None:
    caplog.set_level(logging.INFO, logger="roomwarden.actions")
    async with site_and_file(tmp_path) as (_site, factory):
        journal_with(tmp_path / "state", value)
        async with booted(tmp_path, factory, "unreadable") as service:
            assert "event=output_release_refused" in caplog.text
            assert "refused whole" in caplog.text
            assert service.gateway.releases.pending == {}
            assert kept(service.gateway) == []  # forgotten
