"""The demo's own broker and database (gateway/localservices.py) start on ports no outgoing
connection can take meanwhile, and start again elsewhere when another listener took theirs."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway import localservices
from gateway.localservices import (
    RESERVED_PORTS,
    LocalMosquitto,
    ServiceError,
    free_port,
    wait_until_ready,
)


@contextmanager
def outgoing_connection() -> Iterator[int]:
    """A connected client socket on loopback (its peer a listener of ours); its local port."""
    with socket.create_server(("127.0.0.1", 0)) as server, \
            socket.create_connection(server.getsockname()) as client:
        accepted, _ = server.accept()
        with accepted:
            yield int(client.getsockname()[1])


def test_free_ports_are_bindable_and_below_the_ephemeral_range() -> None:
    low, _high = localservices._ephemeral_range()
    ports = [free_port() for _ in range(200)]
    assert all(localservices.LISTEN_PORTS_FROM <= p < low for p in ports), ports
    assert not RESERVED_PORTS & set(ports)
    for port in ports[:20]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_broker_whose_port_was_taken_starts_on_another(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    if localservices.find_binary("mosquitto", "/usr/sbin/mosquitto") is None:
        pytest.skip("mosquitto is not installed")
    # the race: an outgoing connection's local end on the port chosen, before the broker binds
    with outgoing_connection() as taken_port:
        choices = iter([taken_port])
        real = localservices.free_port
        monkeypatch.setattr(localservices, "free_port", lambda: next(choices, None) or real())
        with LocalMosquitto(tmp_path / "mqtt") as broker:
            assert broker.port != taken_port
            assert localservices.port_open(broker.port)
            assert "in use" in (tmp_path / "mqtt" / "mosquitto.log").read_text()


def test_a_server_that_exits_is_reported_at_once_with_its_log(tmp_path: Path) -> None:
    import subprocess
    import time

    log = tmp_path / "server.log"
    log.write_text("starting\nfatal: cannot open the data directory\n")
    process = subprocess.Popen(["sh", "-c", "exit 3"])
    began = time.monotonic()
    with pytest.raises(ServiceError) as error:
        wait_until_ready(process, lambda: False, name="server", where="127.0.0.1:1",
                         timeout=30, log=log)
    assert time.monotonic() - began < 20  # not the deadline: the exit
    assert "exited with 3" in str(error.value)
    assert "cannot open the data directory" in str(error.value)
