"""What `roomwarden flash` (and the operator commands, which share its MQTT link) says when no
MQTT session comes of a connection: a broker that requires a client certificate closing the
connection (it said `no answer from the broker … within 10s` after ten seconds, as if the
network were down), nothing answering, the connection refused, a TLS failure, a CONNACK that
refuses. Against real mosquitto brokers on loopback (TLS with `require_certificate true`, as
central/mosquitto/roomwarden.conf's 8883 listener); the certificates are tests/fixtures/pki.py's
(the `cryptography` package)."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.flashing.flash_client import FlashOptions, flash
from gateway.flashing.keys import new_key_pair
from gateway.localservices import free_port
from tests.fixtures.pki import Pki, make_ca, make_leaf, make_pki, mosquitto_tls_listener
from tests.fixtures.services import MOSQUITTO, Broker

ROOT = Path(__file__).resolve().parents[2]
SITE_FILE = ROOT / "firmware_configs" / "telecom_equipment_room.yaml"
GW = "fsu-gz-tianhe-0301"

pytestmark = [pytest.mark.skipif(not os.path.exists(MOSQUITTO),
                                 reason="mosquitto is not installed"),
              pytest.mark.services]


# ------------------------------------------------------------------------------ certificates


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), client_name="flasher")


# ------------------------------------------------------------------------------ brokers


class CertificateBroker(Broker):
    """mosquitto with one TLS listener that requires a client certificate signed by the CA
    (central/mosquitto/roomwarden.conf's 8883: `require_certificate true`,
    `use_identity_as_username true`)."""

    def __init__(self, directory: Path, pki: Pki) -> None:
        super().__init__(directory)
        self.conf.write_text("\n".join([
            *mosquitto_tls_listener(pki, self.port, self.log, identity_as_username=True),
            "allow_anonymous false"]) + "\n")


class LoginBroker(Broker):
    """mosquitto on plain MQTT that lets no anonymous client in (CONNACK `Not authorized`)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.conf.write_text("\n".join([
            "per_listener_settings true", "persistence false", f"user {getpass.getuser()}",
            f"log_dest file {self.log}", f"listener {self.port} 127.0.0.1",
            "allow_anonymous false"]) + "\n")


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[CertificateBroker]:
    b = CertificateBroker(tmp_path / "broker", pki)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def key(tmp_path: Path) -> Path:
    private, _public = new_key_pair(tmp_path / "keys", "ops")
    return private


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections (the kernel's backlog) and never says a
    word: nothing answers there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def roomwarden(*argv: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "gateway", *argv], capture_output=True,
                            text=True, timeout=60, cwd=ROOT, check=False)
    return result, time.monotonic() - started


def flash_args(broker: str, key: Path, *extra: str) -> list[str]:
    return ["flash", str(SITE_FILE), "--gateway", GW, "--broker", broker, "--key", str(key),
            *extra]


def run_flash(broker: str, key: Path, capsys: pytest.CaptureFixture[str], *,
              connect_timeout: float = 10.0, **kw: object) -> tuple[int, str]:
    options = FlashOptions(config=SITE_FILE, gateway=GW, broker=broker, key=key, version=7,
                           connect_timeout=connect_timeout, timeout=1.0, **kw)  # type: ignore[arg-type]
    code = flash(options)
    return code, capsys.readouterr().err


# ------------------------------------------------------------------------------ the cases


@pytest.mark.process
def test_a_broker_that_requires_a_client_certificate_is_named_as_such(
        tls_broker: CertificateBroker, pki: Pki, key: Path) -> None:
    """The audit's case: `--ca-file` and no client certificate against 8883-like TLS."""
    result, took = roomwarden(*flash_args(f"mqtts://localhost:{tls_broker.port}", key,
                                          "--ca-file", str(pki.ca)))
    assert result.returncode == 2, result.stdout + result.stderr
    err = result.stderr
    assert "no answer" not in err, err
    assert (f"flash: the broker localhost:{tls_broker.port} closed the connection during the "
            "TLS handshake or before answering CONNECT") in err, err
    assert "the broker may require a client certificate: --cert-file/--cert-key-file" in err
    assert "Traceback" not in err
    assert took < 8, f"{took:.1f}s: it waited for a timeout"
    assert "peer did not return a certificate" in tls_broker.log.read_text()


@pytest.mark.process
def test_with_the_client_certificate_the_same_broker_lets_the_flash_through(
        tls_broker: CertificateBroker, pki: Pki, key: Path) -> None:
    result, _took = roomwarden(*flash_args(
        f"mqtts://localhost:{tls_broker.port}", key, "--ca-file", str(pki.ca),
        "--cert-file", str(pki.client_cert), "--cert-key-file", str(pki.client_key),
        "--version", "1", "--timeout", "1s"))
    # connected, subscribed and sent; no gateway answers on this broker
    assert "sent version 1" in result.stdout, result.stdout + result.stderr
    assert "no final answer from the gateway within 1s" in result.stdout
    assert result.returncode == 1


@pytest.mark.process
def test_an_operator_command_reports_it_the_same_way(tls_broker: CertificateBroker, pki: Pki,
                                                      key: Path) -> None:
    result, took = roomwarden("ack", "--gateway", GW, "--site", "gz-tianhe-exchange",
                              "--broker", f"mqtts://localhost:{tls_broker.port}",
                              "--key", str(key), "--alarm", "fire.smoke@sd-1.smoke",
                              "--ca-file", str(pki.ca))
    assert result.returncode == 2
    assert (f"acknowledge: the broker localhost:{tls_broker.port} closed the connection "
            "during the TLS handshake") in result.stderr, result.stderr
    assert "--cert-file/--cert-key-file" in result.stderr and took < 8


def test_a_client_certificate_the_broker_does_not_accept(
        tls_broker: CertificateBroker, pki: Pki, key: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "rogue"
    d.mkdir()
    cert, cert_key = make_leaf(d, "rogue", make_ca(d, "rogue-ca"))
    code, err = run_flash(f"mqtts://127.0.0.1:{tls_broker.port}", key, capsys,
                          ca_file=str(pki.ca), cert_file=str(cert), key_file=str(cert_key))
    assert code == 2
    assert "closed the connection during the TLS handshake" in err or "TLS failure" in err, err
    assert f"may not accept the client certificate {cert}" in err, err


def test_a_broker_certificate_from_another_ca_is_a_tls_failure(
        tls_broker: CertificateBroker, pki: Pki, key: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_flash(f"mqtts://127.0.0.1:{tls_broker.port}", key, capsys,
                          ca_file=str(pki.other_ca))
    assert code == 2
    assert (f"flash: TLS failure with the broker 127.0.0.1:{tls_broker.port}: its certificate "
            "was not accepted: ") in err, err
    assert "certificate" in err.split("not accepted: ")[1]


def test_a_refused_connection(key: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nothing listens there
    code, err = run_flash(f"mqtt://127.0.0.1:{port}", key, capsys)
    assert code == 2
    assert f"cannot connect to 127.0.0.1:{port}: the connection was refused" in err, err


def test_nothing_answers(silent_port: int, key: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code, err = run_flash(f"mqtt://127.0.0.1:{silent_port}", key, capsys, connect_timeout=1.0)
    assert code == 2 and time.monotonic() - started < 5
    assert (f"no answer from the broker 127.0.0.1:{silent_port} within 1s: the connection is "
            "open but no CONNACK came back") in err, err
    code, err = run_flash(f"mqtts://127.0.0.1:{silent_port}", key, capsys, connect_timeout=1.0)
    assert code == 2
    assert (f"no answer from the broker 127.0.0.1:{silent_port} within 1s to the TCP connect "
            "and TLS handshake") in err, err


def test_plain_mqtt_to_a_tls_listener(tls_broker: CertificateBroker, key: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_flash(f"mqtt://127.0.0.1:{tls_broker.port}", key, capsys)
    assert code == 2
    assert "closed the connection before answering CONNECT" in err, err
    assert "if that port is a TLS listener, use mqtts://" in err


def test_a_connack_that_refuses_gives_its_reason(tmp_path: Path, key: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    b = LoginBroker(tmp_path / "login-broker")
    b.start()
    try:
        code, err = run_flash(f"mqtt://127.0.0.1:{b.port}", key, capsys)
    finally:
        b.stop()
    assert code == 2
    assert (f"the broker 127.0.0.1:{b.port} refused the connection: CONNACK reason "
            "'Not authorized'; the broker wants a login: --username and --password-file") in err
