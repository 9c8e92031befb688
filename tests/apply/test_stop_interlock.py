"""A clean stop keeps the interlocks (the outputs audit), against the real gateway service and
its simulated site: the README's example lock holds recirculation off while the battery room's
fan purges hydrogen. With `on_stop: on` for the recirculation and the fan held running (its
`on_stop: hold`) through a SIGTERM during a purge, the stop wrote the recirculation on — both
ran for as long as the gateway stayed stopped. Now its stop state yields to the lock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.sim.signals import Constant
from tests.apply.conftest import running_service, until

FAN, RECIRCULATION = "do-tx-01.do3", "do-tx-01.do5"
"""(The fan's contactor is wired normally closed: its coil False runs it.)"""


def recirculation(data: dict[str, Any]) -> None:
    data["outputs"].append({"id": "hvac-recirc", "role": "other", "device": "do-tx-01",
                            "point": "do5", "rooms": ["batt-3f"], "on_stop": "on"})
    data["interlocks"] = [{"output": "hvac-recirc", "while_on": "fan-batt-3f",
                           "reason": "no recirculation while purging H2"}]


async def test_a_clean_stop_during_a_purge_leaves_recirculation_off(tmp_path: Path) -> None:
    async with running_service(tmp_path, change=recirculation) as run:
        gw, site = run.service.gateway, run.site
        site.set_signal("h2-batt-01.h2", Constant(value=30.0))  # above the alarm: purge
        await until(lambda: site.read_point(FAN) is False, 30, "the fan running")
        assert site.read_point(RECIRCULATION) is not True
        run.service.stop()
        await until(lambda: gw._group is None, 30, "the gateway stopped")
        assert site.read_point(FAN) is False  # held running, as `on_stop: hold` says
        assert site.read_point(RECIRCULATION) is False  # (True: both ran while stopped)
