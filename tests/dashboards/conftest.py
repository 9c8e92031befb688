"""The fleet every dashboard test queries (tests/dashboards/fleet.py), started once."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.dashboards.fleet import Fleet, start_fleet, stop_fleet
from tests.fixtures.databases import INFLUXD, InfluxV1
from tests.fixtures.services import MOSQUITTO, VICTORIA, Broker, Victoria


@pytest.fixture(scope="package")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    for binary in (MOSQUITTO, VICTORIA, INFLUXD):
        if not os.path.exists(binary):
            pytest.skip(f"{binary} is not installed")
    workdir = tmp_path_factory.mktemp("fleet")
    broker = Broker(workdir / "broker")
    influx = InfluxV1(workdir / "influx")
    victoria = Victoria(workdir / "vm")
    fleet = Fleet(broker, influx, victoria, workdir)
    try:
        broker.start()
        influx.start()
        victoria.start()
        start_fleet(fleet)
        yield fleet
    finally:
        stop_fleet(fleet)
        victoria.stop()
        influx.stop()
        broker.stop()
