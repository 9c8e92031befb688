"""Drills over the wire, in real time: the simulator serves the site on loopback and ptys, a
real gateway polls it, and what the gateway did is read back from the simulator's coil and
input log (gateway.drills.wire). The short drills of issue 11's new behaviours run this way:
a fan commanded with no airflow (its own alarm, critical with hydrogen, charging stopped),
airflow without a command, a VRLA block above ambient and at 52 °C, an LFP cell at 52 °C, and
a welded fan relay written at most once per back-off step (writes counted at the simulator;
tests/actions/test_driver.py counts them over 60 s on the driver alone too).

Each drill takes its duration in real time; they run side by side in one event loop (each
with its own simulator and gateway), so the five take about two minutes.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.drills.wire import run_wire_drill

REPO = Path(__file__).resolve().parents[2]
DRILLS = [REPO / "edge_rules" / "drills" / f"{name}.yaml" for name in (
    "tx_batt_fan_no_airflow", "tx_batt_fan_runs_uncommanded", "tx_vrla_block_quick",
    "ess_lfp_cell_quick", "tx_stuck_fan_relay")]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


async def _run_all(work: Path) -> list[tuple[bool, str]]:
    reports = await asyncio.gather(*(run_wire_drill(path, work / path.stem)
                                     for path in DRILLS))
    return [(report.ok, report.render()) for report in reports]


@pytest.fixture(scope="module")
def reports() -> Iterator[dict[Path, tuple[bool, str]]]:
    with tempfile.TemporaryDirectory(prefix="roomwarden-wire-drills-") as tmp:
        yield dict(zip(DRILLS, asyncio.run(_run_all(Path(tmp))), strict=True))


@pytest.mark.parametrize("path", DRILLS, ids=[p.stem for p in DRILLS])
def test_drill_passes_over_the_wire(path: Path, reports: dict[Path, tuple[bool, str]]
                                    ) -> None:
    ok, rendered = reports[path]
    print(rendered)
    assert ok, f"drill failed over the wire:\n{rendered}"
    assert "simulator coil and input log:" in rendered or "ess_lfp" in path.stem
