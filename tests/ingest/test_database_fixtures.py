"""The tests' own databases start reliably: an influxd whose port another process took between
the fixture's choice and its bind starts again elsewhere, and one that cannot start fails the
test at once with influxd's own words (CI once waited 15 s for a /ping from an influxd that had
exited at once on "address already in use")."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from tests.fixtures.databases import INFLUXD, InfluxV1


@pytest.fixture(autouse=True)
def _needs_influxd() -> None:
    if not os.path.exists(INFLUXD):
        pytest.skip("influxdb (1.x) is not installed")


def test_an_influxd_whose_port_was_taken_starts_on_another(tmp_path: Path) -> None:
    db = InfluxV1(tmp_path / "influxdb")
    # the race: an outgoing connection's local end on the port chosen, before influxd binds
    with socket.create_server(("127.0.0.1", 0)) as server, socket.socket() as client:
        client.bind(("127.0.0.1", db.port))
        client.connect(server.getsockname())
        taken_port = db.port
        try:
            db.start()
            assert db.port != taken_port
            db.query("CREATE DATABASE fixture_check")
            log = (tmp_path / "influxdb" / "influxd.log").read_text()
            assert "address already in use" in log
        finally:
            db.stop()


def test_an_influxd_that_cannot_start_fails_at_once_with_its_reason(tmp_path: Path) -> None:
    db = InfluxV1(tmp_path / "influxdb")
    db.conf.write_text(db.conf.read_text() + "[http]\n  bind-address = 'not closed\n")
    began = time.monotonic()
    with pytest.raises(AssertionError) as error:
        db.start()
    assert time.monotonic() - began < 30  # the exit, not the 60-s deadline
    assert "influxd exited" in str(error.value)
    assert db.process is None or db.process.poll() is not None
