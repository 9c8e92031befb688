"""A candidate whose rules and outputs start but whose uplink cannot be built (its outbox path
is a directory: nothing the config check reads) is rolled back whole, against the real gateway
service, its simulated site, its panel over HTTP and a real Mosquitto. The config audit found
it reported `rolled_back` while the candidate's rules ran on, with the old uplink closed and
none in its place (and the same with a panel that could not be built): the gateway answered
that the previous config ran when it did not, and sent nothing more to the centre."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path
from typing import Any

from gateway.localservices import free_port
from gateway.sim.signals import Constant
from tests.apply.conftest import ask, edit_config, running_service, until
from tests.fixtures.services import Broker, broker

__all__ = ["broker"]

SIREN = "do-tx-01.do1"
FIRE = "fire.smoke_coincidence"


async def test_a_candidate_whose_uplink_fails_to_start_leaves_the_previous_config_whole(
        tmp_path: Path, broker: Broker) -> None:
    panel_port = free_port()

    def site(data: dict[str, Any]) -> None:
        data["uplink"] = {"broker": "127.0.0.1", "port": broker.port, "protocol": "5"}
        data["panel"] = {"enabled": True, "bind": "127.0.0.1", "port": panel_port}

    async with running_service(tmp_path, change=site) as run:
        gw = run.service.gateway
        previous = gw.loaded
        await until(lambda: gw.uplink is not None and gw.uplink.status().connected, 15,
                    "uplink connected")
        await asyncio.wait_for(gw.panel_ready.wait(), 10)
        run.site.set_signal("smoke-tx-01.alarm", Constant(value=True))
        run.site.set_signal("smoke-tx-02.alarm", Constant(value=True))
        await until(lambda: run.site.read_point(SIREN) is True, 20, "the siren on")
        [fire] = [a for a in gw.core.alarms.active() if a.key.rule == FIRE]

        directory = tmp_path / "an-outbox-that-is-a-directory"
        directory.mkdir()

        def broken_uplink(data: dict[str, Any]) -> None:
            data["uplink"]["outbox"] = {"path": str(directory)}
            data["gateway"]["name"] = "CANDIDATE"

        answers = await ask(run.control, {"op": "apply", "author": "erin",
                                          "config": edit_config(run.text, broken_uplink)})
        result = answers[-1]["result"]
        assert (result["state"], result["code"]) == ("rolled_back", "apply_failed"), result
        # what runs is what the answer says: the previous config, every part of it
        assert gw.config_version == 0 and gw.loaded is previous
        assert gw.loaded.config.gateway.name != "CANDIDATE"
        await until(lambda: gw.uplink is not None and gw.uplink.status().connected, 15,
                    "the previous config's uplink connected again")
        await until(lambda: gw.panel_port is not None, 10, "the panel serving again")
        health = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{gw.panel_port}/healthz",
                                           timeout=5).status)
        assert health == 200
        [after] = [a for a in gw.core.alarms.active() if a.key.rule == FIRE]
        assert after.activated_ns == fire.activated_ns and after.state == fire.state
        assert run.site.read_point(SIREN) is True
