"""The uplink against a real mosquitto with mutual TLS and a password file, MQTT 3.1.1 and 5.

The certificates (a CA, the broker's certificate for 127.0.0.1, a client certificate, and a
second, unrelated CA) are tests/fixtures/pki.py's; the password file is made with
`mosquitto_passwd -b`. The broker has a second, plain listener on loopback for the test's
subscriber only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import SystemClock
from gateway.contract.wire import GatewayState, TelemetryBatch, decode
from gateway.localservices import port_open
from gateway.uplink.publisher import Uplink
from tests.fixtures.pki import Pki, make_pki, mosquitto_tls_listener
from tests.uplink.conftest import MOSQUITTO, Broker, Subscriber, free_port
from tests.uplink.test_publisher import GW, POINTS, PREFIX, SITE, of, samples, settings, until

MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
USER = "gw-1"
PASSWORD = "Tr0ub4dor&3-never-in-logs"
WRONG_PASSWORD = "hunter2-also-never-in-logs"
PROTOCOLS = pytest.mark.parametrize("protocol", ["3.1.1", "5"])

pytestmark = pytest.mark.skipif(
    not Path(MOSQUITTO_PASSWD).exists() or not Path(MOSQUITTO).exists(),
    reason="needs mosquitto (with mosquitto_passwd)")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), client_name=USER)


class SecureBroker(Broker):
    """`port`: TLS with a required client certificate and a password file, no anonymous
    clients. `plain_port`: anonymous plain MQTT on loopback, for the test's subscriber."""

    def __init__(self, directory: Path, pki: Pki) -> None:
        super().__init__(directory)
        self.plain_port = free_port()
        passwd = directory / "passwd"
        subprocess.run([MOSQUITTO_PASSWD, "-c", "-b", str(passwd), USER, PASSWORD],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        passwd.chmod(0o600)
        assert PASSWORD not in passwd.read_text()  # hashed
        self.conf.write_text("\n".join([
            *mosquitto_tls_listener(pki, self.port, self.log, identity_as_username=False),
            f"password_file {passwd}", "allow_anonymous false",
            f"listener {self.plain_port} 127.0.0.1", "allow_anonymous true",
        ]) + "\n")

    def start(self) -> None:
        """Started once both listeners accept: the base waits for `port` only, and mosquitto
        opens `plain_port` after it (the subscriber was refused now and then)."""
        super().start()
        deadline = time.monotonic() + 10
        while not port_open(self.plain_port):
            if time.monotonic() > deadline:
                raise TimeoutError("mosquitto's plain listener did not open")
            time.sleep(0.02)


@pytest.fixture
def secure_broker(tmp_path: Path, pki: Pki) -> Any:
    b = SecureBroker(tmp_path / "broker", pki)
    b.start()
    yield b
    b.stop()


def tls_settings(broker: SecureBroker, pki: Pki, protocol: str, password: str = PASSWORD, *,
                 ca: Path | None = None, client_cert: bool = True, **kw: Any) -> Any:
    pw = broker.directory.parent / "mqtt.password"
    pw.write_text(password + "\n")
    tls: dict[str, Any] = {"ca_file": str(ca or pki.ca)}
    if client_cert:
        tls.update(cert_file=str(pki.client_cert), key_file=str(pki.client_key))
    return settings(broker.port, protocol=protocol, tls=tls, username=USER,
                    password_file=str(pw), keepalive="5s", **kw)


@contextlib.asynccontextmanager
async def running(s: Any, state_dir: Path) -> AsyncIterator[tuple[Uplink, asyncio.Task[None]]]:
    up = Uplink(s, SITE, GW, state_dir, SystemClock(), POINTS)
    task = asyncio.create_task(up.run())
    try:
        yield up, task
    finally:
        await up.close()


def assert_secret_kept(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
                       up: Uplink) -> None:
    out, err = capsys.readouterr()
    for secret in (PASSWORD, WRONG_PASSWORD):
        assert secret not in caplog.text
        assert all(secret not in str(r.args) and secret not in (r.exc_text or "")
                   for r in caplog.records)
        assert secret not in out and secret not in err
        assert secret not in (up.status().last_error or "")


@PROTOCOLS
async def test_connects_with_ca_client_certificate_and_password(
        protocol: str, secure_broker: SecureBroker, pki: Pki, tmp_path: Path,
        subscribers: list[Subscriber], caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    sub = Subscriber(secure_broker.plain_port, PREFIX + "#")
    subscribers.append(sub)
    async with running(tls_settings(secure_broker, pki, protocol), tmp_path / "state") as (
            up, task):
        await until(lambda: up.status().connected, what="TLS connect")
        up.on_samples(samples(0))
        await until(lambda: len(sub.snapshot(of("telemetry"))) == 1, what="telemetry")
        batch = decode(*(lambda m: (m.topic, m.payload))(sub.snapshot(of("telemetry"))[0]))
        assert isinstance(batch, TelemetryBatch) and batch.seq == 1
        births = [decode(m.topic, m.payload) for m in sub.snapshot(of("state"))]
        assert any(isinstance(b, GatewayState) and b.status == "online" for b in births)
        assert up.status().connects == 1 and not task.done()
    assert_secret_kept(caplog, capsys, up)


EXPECTED = {"wrong password": "broker refused: Not authorized",
            "no client certificate": "broker refused: disconnected",
            "broker not signed by the configured CA": "CERTIFICATE_VERIFY_FAILED"}
REFUSALS: dict[str, dict[str, Any]] = {
    "wrong password": {"password": WRONG_PASSWORD},
    "no client certificate": {"client_cert": False},
    "broker not signed by the configured CA": {"ca": "other"},
}


@PROTOCOLS
@pytest.mark.parametrize("case", sorted(REFUSALS))
async def test_refused_connections_back_off_and_retry_without_crashing(
        protocol: str, case: str, secure_broker: SecureBroker, pki: Pki, tmp_path: Path,
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    kw = dict(REFUSALS[case])
    if kw.get("ca") == "other":
        kw["ca"] = pki.other_ca
    s = tls_settings(secure_broker, pki, protocol, reconnect_min="100ms",
                     reconnect_max="400ms", **kw)

    def waits() -> list[float]:
        return [float(r.args[0]) for r in caplog.records  # type: ignore[index,arg-type]
                if r.getMessage().startswith("event=uplink_reconnect_wait")]

    async with running(s, tmp_path / "state") as (up, task):
        up.on_samples(samples(0))
        await until(lambda: len(waits()) >= 4, timeout=30, what="four refused attempts")
        status = up.status()
        assert not status.connected and status.connects == 0 and not task.done()
        assert status.last_error is not None
        assert EXPECTED[case] in status.last_error
        assert up.outbox.depth() >= 1  # kept for when the broker lets us in
        if case == "no client certificate":  # TLS 1.3: the broker ends it after the handshake
            log = await asyncio.to_thread(secure_broker.log.read_text)
            assert "peer did not return a certificate" in log
        w = waits()
        # bounded exponential backoff: 0.1, 0.2, 0.4, 0.4 s (±20 % jitter)
        assert w[0] < w[1] < w[2] and max(w) <= 0.4 * 1.2 and min(w) >= 0.1 * 0.8
    errors = [r for r in caplog.records if r.getMessage().startswith("event=uplink_error")]
    assert errors, "a refused connection is logged"
    assert_secret_kept(caplog, capsys, up)


async def test_a_fixed_password_file_is_read_at_the_next_connect(
        secure_broker: SecureBroker, pki: Pki, tmp_path: Path,
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    s = tls_settings(secure_broker, pki, "5", WRONG_PASSWORD, reconnect_min="100ms",
                     reconnect_max="200ms")
    async with running(s, tmp_path / "state") as (up, _task):
        await until(lambda: up.status().last_error is not None, what="refused")
        assert s.password_file is not None
        await asyncio.to_thread(Path(s.password_file).write_text, PASSWORD + "\n")  # rotated
        await until(lambda: up.status().connected, what="connect with the new password")
    assert_secret_kept(caplog, capsys, up)
