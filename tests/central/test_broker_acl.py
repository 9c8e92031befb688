"""Broker authorisation as shipped (central/mosquitto/), against a real mosquitto.

The identities are made by the shipped `issue-cert.sh` (certificates, CN = MQTT username) and
mosquitto_passwd (the same usernames); the broker runs the shipped `roomwarden.conf`, only its
ports and file paths templated, with the shipped `roomwarden.acl` as it lies in the repository.

- Every identity publishes on every channel of its own, another gateway's (same site, other
  site with the same gateway id) and an invented gateway's topics, and reads `#`: what the
  broker accepts and delivers is exactly the policy below, on both listeners.
- End to end, with the real ingest writing to a real VictoriaMetrics and the real uplinks of
  gateways A and B: A's credentials cannot put telemetry, an alarm event or a state under B, nor
  invent a site; an operator cannot publish telemetry; none of it reaches the database, while
  everything A and B publish does. The same run without the ACL lets the spoofs in.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.alarms.lifecycle import AlarmState
from gateway.clock import SystemClock
from gateway.contract.wire import (
    CHANNELS,
    MAX_PAYLOAD_BYTES,
    Channel,
    GatewayState,
    PointCatalog,
    TelemetryBatch,
    Topic,
    catalog_hash,
    encode,
)
from gateway.field.sample import Quality, Sample
from gateway.ingest.service import IngestService
from gateway.ingest.settings import IngestSettings
from gateway.uplink.publisher import Uplink
from gateway.uplink.records import event_message
from tests.central.shipped import (
    ISSUE,
    MOSQUITTO_PASSWD,
    OPENSSL,
    Identity,
    Pki,
    ShippedBroker,
    issue,
    make_pki,
)
from tests.fixtures.services import MOSQUITTO, Victoria, wait_for
from tests.uplink.test_publisher import POINTS, event, settings, until

pytestmark = pytest.mark.skipif(
    OPENSSL is None or not Path(MOSQUITTO).exists() or not Path(MOSQUITTO_PASSWD).exists(),
    reason="needs openssl and mosquitto (with mosquitto_passwd)")

A, B, C = "site-1/gw-a", "site-1/gw-b", "site-2/gw-a"
"""Gateway identities: B shares A's site, C shares A's gateway id on another site."""
INVENTED = "site-x/gw-x"
CENTRAL = ["ingest", "operator", "flasher", "visitor"]
"""`visitor`: a certificate from the right CA for a name the ACL does not know."""
IDENTITIES = [A, B, C, *CENTRAL]

# ------------------------------------------------------------------------------ the policy

ALL_CHANNELS = sorted({ch.value for ch in Channel} | {"ack"})
"""Every contract channel, and `ack` (the ingest's watermark) whether or not it is in the
contract yet."""
UP = {ch.value for ch, spec in CHANNELS.items() if spec.upstream}
DOWN = set(ALL_CHANNELS) - UP
GATEWAY_READS = {"cmd", "config/set", "ack"}
OPERATOR_READS = {"cmd/result", "config/status"}
CENTRAL_WRITES = {"ingest": {"cmd", "ack"}, "operator": {"cmd"},
                  "flasher": {"cmd", "config/set"}, "visitor": set()}


def may_write(who: str, target: str, channel: str) -> bool:
    if "/" in who:  # a gateway: its own upward channels only
        return who == target and channel in UP
    return channel in CENTRAL_WRITES[who]


def may_read(who: str, target: str, channel: str) -> bool:
    if "/" in who:
        return who == target and channel in GATEWAY_READS
    if who == "ingest":
        return channel in UP
    if who in ("operator", "flasher"):
        return channel in OPERATOR_READS
    return False


def test_the_contract_has_no_downward_channel_the_acl_does_not_know() -> None:
    """A new channel must get its ACL lines (and a place in this policy) before it ships."""
    assert DOWN == GATEWAY_READS


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    gateways = [(i.split("/")[0], i.split("/")[1]) for i in (A, B, C)]
    return make_pki(tmp_path_factory.mktemp("pki"), gateways, CENTRAL)


@pytest.fixture
def shipped_broker(tmp_path: Path, pki: Pki) -> Iterator[ShippedBroker]:
    b = ShippedBroker(tmp_path / "broker", pki)
    b.start()
    yield b
    b.stop()


class Client:
    """A paho client acting as one identity: a certificate on the certificate listener, or
    username and password on the password listener. Records what it receives and the broker's
    answer to each QoS-1 publish."""

    def __init__(self, broker: ShippedBroker, pki: Pki, ident: Identity, *,
                 password: bool = False, protocol: MQTTProtocolVersion = mqtt.MQTTv5,
                 username: str | None = None, connect_timeout: float = 10,
                 client_id: str | None = None, persistent: bool = False) -> None:
        self.ident = ident
        self.received: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._acks: dict[int, str] = {}
        self._acked = threading.Condition(self._lock)
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.connect_reason = ""
        self.session_present = False
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, protocol=protocol,
            client_id=client_id or f"t-{ident.name.replace('/', '_')}-{id(self)}")
        self.client.tls_set(ca_certs=str(pki.ca),
                            certfile=None if password else str(ident.cert),
                            keyfile=None if password else str(ident.key))
        if password:
            self.client.username_pw_set(ident.name, ident.password)
        elif username is not None:
            self.client.username_pw_set(username, pki[username].password)

        def on_connect(_c: mqtt.Client, _u: Any, flags: mqtt.ConnectFlags, rc: ReasonCode,
                       _p: Any) -> None:
            self.connect_reason = str(rc)
            self.session_present = flags.session_present
            self._connected.set()

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            with self._lock:
                self.received.append((msg.topic, bytes(msg.payload)))

        def on_publish(_c: mqtt.Client, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
            with self._acked:
                self._acks[mid] = str(rc)
                self._acked.notify_all()

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        self.client.on_publish = on_publish
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        session: dict[str, Any] = {}
        if persistent:  # MQTT 5: keep the session (and what is queued) for an hour
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 3600
            session = {"clean_start": False, "properties": props}
        self.client.connect("127.0.0.1", broker.password_port if password else broker.port,
                            keepalive=30, **session)
        self.client.loop_start()
        if not self._connected.wait(connect_timeout) or self.connect_reason != "Success":
            self.close()
            raise ConnectionError(f"{ident.name}: {self.connect_reason or 'no CONNACK'}")

    def subscribe(self, *filters: str) -> None:
        self._subscribed.clear()
        self.client.subscribe([(f, 1) for f in filters])
        assert self._subscribed.wait(10), "no SUBACK"

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> str:
        """QoS 1; the broker's answer: `Success` (or another non-failure), or `Not authorized`
        (MQTT 5; MQTT 3.1.1 has no way to say so and always answers `Success`)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        with self._acked:
            assert self._acked.wait_for(lambda: info.mid in self._acks, 10), "no PUBACK"
            return self._acks.pop(info.mid)

    def topics(self) -> set[tuple[str, bytes]]:
        with self._lock:
            return set(self.received)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        c.close()


# ------------------------------------------------------------------------------ the matrix


@pytest.mark.parametrize("listener", ["certificate", "password"])
def test_each_identity_publishes_and_reads_exactly_what_the_policy_allows(
        listener: str, shipped_broker: ShippedBroker, pki: Pki,
        clients: list[Client]) -> None:
    who = {name: Client(shipped_broker, pki, pki[name], password=listener == "password")
           for name in IDENTITIES}
    clients.extend(who.values())
    for c in who.values():
        c.subscribe("#", "$share/g/#")  # wildcards grant nothing the ACL does not

    expected: dict[str, set[tuple[str, bytes]]] = {name: set() for name in IDENTITIES}
    wrong: list[str] = []
    for publisher, client in who.items():
        for target in (A, B, C, INVENTED):
            for channel in ALL_CHANNELS:
                topic = f"roomwarden/{target}/{channel}"
                payload = f"from {publisher}".encode()
                reason = client.publish(topic, payload)
                allowed = may_write(publisher, target, channel)
                if allowed != (reason != "Not authorized") or (allowed and reason not in (
                        "Success", "No matching subscribers")):
                    wrong.append(f"{publisher} → {topic}: {reason}")
                if allowed:
                    for reader in IDENTITIES:
                        if may_read(reader, target, channel):
                            expected[reader].add((topic, payload))
    assert not wrong, "publishes the broker judged against the policy:\n" + "\n".join(wrong)
    assert all(expected[g] for g in (A, B, C)) and expected["ingest"]  # not vacuous

    wait_for(lambda: all(expected[n] <= who[n].topics() for n in IDENTITIES), timeout=15,
             what="every permitted delivery")
    time.sleep(0.5)  # anything the ACL let through wrongly would have arrived by now
    for name in IDENTITIES:
        extra = who[name].topics() - expected[name]
        assert not extra, f"{name} read what it may not: {sorted(extra)[:10]}"
    assert not who["visitor"].topics()


def test_a_gateway_certificate_cannot_claim_another_username(
        shipped_broker: ShippedBroker, pki: Pki, clients: list[Client]) -> None:
    """On the certificate listener the CN is the username: A's certificate with the ingest's
    username and password still has A's rights only."""
    posing = Client(shipped_broker, pki, pki[A], username="ingest")
    ingest = Client(shipped_broker, pki, pki["ingest"])
    b = Client(shipped_broker, pki, pki[B])
    clients.extend([posing, ingest, b])
    posing.subscribe("roomwarden/+/+/telemetry", "roomwarden/site-1/gw-b/cmd")
    assert posing.publish(f"roomwarden/{B}/telemetry", b"x") == "Not authorized"
    assert posing.publish(f"roomwarden/{B}/cmd", b"x") == "Not authorized"
    assert b.publish(f"roomwarden/{B}/telemetry", b"from b") == "Success"
    assert ingest.publish(f"roomwarden/{B}/cmd", b"to b") == "Success"
    assert posing.publish(f"roomwarden/{A}/telemetry", b"own") == "Success"  # its own: yes
    time.sleep(0.5)
    assert posing.topics() == set()


def test_the_script_issues_only_ids_the_contract_allows(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", str(ISSUE), "--pki", str(tmp_path), *args],
                              capture_output=True, text=True)

    assert run("ca").returncode == 0
    for bad in (["gateway", "a/b", "gw"], ["gateway", "site", "gw+"], ["gateway", "site", "#"],
                ["gateway", "site", ".gw"], ["gateway", "site", "g" * 65],
                ["central", "ops/x"], ["central", ""], ["gateway", "only-site"]):
        result = run(*bad)
        assert result.returncode != 0 and "issue-cert.sh:" in result.stderr, bad
    assert run("ca").returncode != 0  # never overwrites the CA
    assert run("revoke", str(tmp_path / "ca.pem")).returncode != 0  # nor revokes it
    assert run("gateway", "s.1", "gw_1").returncode == 0
    assert run("gateway", "s.1", "gw_1").returncode != 0  # nor an identity
    key = tmp_path / "gateways" / "s.1" / "gw_1.key"
    assert key.stat().st_mode & 0o077 == 0
    assert OPENSSL is not None
    subject = subprocess.run([OPENSSL, "x509", "-in", str(key.with_suffix(".pem")), "-noout",
                              "-subject", "-nameopt", "RFC2253"], capture_output=True,
                             text=True, check=True).stdout
    assert subject.strip() == "subject=CN=s.1/gw_1"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_the_script_passes_shellcheck() -> None:
    result = subprocess.run(["shellcheck", "--shell=sh", str(ISSUE)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout


# ------------------------------------------------------------------------------ end to end

SPOOF_VALUE, INVENTED_VALUE, OPERATOR_VALUE = 666.25, 777.25, 555.25


def tls(pki: Pki, name: str) -> dict[str, str]:
    return {"ca_file": str(pki.ca), "cert_file": str(pki[name].cert),
            "key_file": str(pki[name].key)}


def mqtt_login(broker: ShippedBroker, pki: Pki, name: str, listener: str,
               secrets_dir: Path) -> dict[str, Any]:
    """How a gateway's uplink or the ingest logs in as `name`: a certificate on the
    certificate listener, or username and password file (TLS for the broker only)."""
    if listener == "certificate":
        return {"port": broker.port, "tls": tls(pki, name)}
    secret = secrets_dir / f"{name.replace('/', '_')}.password"
    secret.write_text(pki[name].password + "\n")
    return {"port": broker.password_port, "tls": {"ca_file": str(pki.ca)}, "username": name,
            "password_file": str(secret)}


def batch(site: str, gateway: str, seq: int, value: float) -> TelemetryBatch:
    now = time.time_ns()
    return TelemetryBatch.from_samples(
        site=site, gateway=gateway, seq=seq, produced=now, catalog=catalog_hash(POINTS),
        samples=[Sample("th-1.temperature", value, now, Quality.GOOD)])


def reading(value: float) -> list[Sample]:
    now = time.time_ns()
    return [Sample("th-1.temperature", value, now, Quality.GOOD),
            Sample("th-1.humidity", 40.0, now, Quality.GOOD)]


@contextlib.asynccontextmanager
async def uplink(broker: ShippedBroker, pki: Pki, name: str, state_dir: Path,
                 listener: str = "certificate") -> AsyncIterator[Uplink]:
    site, gw = name.split("/")
    login = mqtt_login(broker, pki, name, listener, state_dir.parent)
    up = Uplink(settings(login.pop("port"), protocol="5", **login), site, gw, state_dir,
                SystemClock(), POINTS)
    task = asyncio.create_task(up.run())
    try:
        await until(lambda: up.status().connected, 15, f"{name} connected")
        yield up
    finally:
        await up.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def temperatures(vm: Victoria) -> dict[tuple[str, str], set[float]]:
    out: dict[tuple[str, str], set[float]] = {}
    for s in vm.export('{__name__="temperature_value"}'):
        key = (s["metric"].get("site", ""), s["metric"].get("gateway", ""))
        out.setdefault(key, set()).update(s["values"])
    return out


def alarm_rules(vm: Victoria) -> set[tuple[str, str, str]]:
    return {(s["metric"].get("site", ""), s["metric"].get("gateway", ""),
             s["metric"].get("rule", ""))
            for s in vm.export('{__name__=~"alarm_events_.*"}')}


def gateway_online(vm: Victoria, gateway: str) -> dict[int, float]:
    """The `online` field of a gateway's states: timestamp (ms) → 1 or 0."""
    out: dict[int, float] = {}
    for s in vm.export('{__name__="gateway_state_online"}'):
        if s["metric"].get("gateway") == gateway:
            out.update(zip(s["timestamps"], s["values"], strict=True))
    return out


def spoof(pki: Pki, broker: ShippedBroker, clients: list[Client],
          password: bool) -> tuple[list[str], int]:
    """What the issue saw a stranger do, with gateway A's and an operator's credentials:
    telemetry, an "all clear" alarm event and a retained `offline` state under B, a catalog
    and telemetry of an invented site; an operator's telemetry under A. Returns the broker's
    answers (MQTT 5 publishers) and the time of the forged `offline` state (ms)."""
    site_b, gw_b = B.split("/")
    site_x, gw_x = INVENTED.split("/")
    clear = event_message(dataclasses.replace(
        event(10**6), rule="spoof.all_clear", state=AlarmState.NORMAL,
        previous_state=AlarmState.ACTIVE_UNACKNOWLEDGED), site=site_b, gateway=gw_b)
    offline = GatewayState(site=site_b, gateway=gw_b, status="offline", ts=time.time_ns())
    invented = PointCatalog.build(site=site_x, gateway=gw_x, produced=time.time_ns(),
                                  points=POINTS)
    answers = []
    # one connection at a time: an identity's client id is its name, so two connections of
    # one identity take each other's place
    for protocol in (mqtt.MQTTv5, mqtt.MQTTv311):
        client = Client(broker, pki, pki[A], password=password, protocol=protocol)
        clients.append(client)
        said = [
            client.publish(str(Topic(site_b, gw_b, Channel.TELEMETRY)),
                           encode(batch(site_b, gw_b, 10**6, SPOOF_VALUE))),
            client.publish(str(Topic(site_b, gw_b, Channel.ALARMS)), encode(clear)),
            client.publish(str(Topic(site_b, gw_b, Channel.STATE)), encode(offline),
                           retain=True),
            client.publish(str(Topic(site_x, gw_x, Channel.META)), encode(invented)),
            client.publish(str(Topic(site_x, gw_x, Channel.TELEMETRY)),
                           encode(batch(site_x, gw_x, 1, INVENTED_VALUE)))]
        client.close()
        if protocol == mqtt.MQTTv5:  # MQTT 3.1.1 has no way to say "not authorized"
            answers += said
    op = Client(broker, pki, pki["operator"], password=password)
    clients.append(op)
    site_a, gw_a = A.split("/")
    answers.append(op.publish(str(Topic(site_a, gw_a, Channel.TELEMETRY)),
                              encode(batch(site_a, gw_a, 10**6, OPERATOR_VALUE))))
    return answers, offline.ts // 1_000_000


async def _scenario(tmp_path: Path, pki: Pki, vm: Victoria, clients: list[Client], *,
                    acl: bool, listener: str = "certificate",
                    ) -> tuple[IngestService, list[str], int]:
    broker = ShippedBroker(tmp_path / "broker", pki, acl=acl)
    broker.start()
    service = IngestService(IngestSettings.model_validate({
        "mqtt": {"host": "127.0.0.1", "protocol": "5", "client_id": "ingest-1",
                 **mqtt_login(broker, pki, "ingest", listener, tmp_path)},
        "influx": {"url": vm.url, "token": "t", "org": "o", "bucket": "b",
                   "flush_interval": "200ms", "retry_max_wait": "1s"},
        "dead_letter": str(tmp_path / "dead.jsonl"),
        "catalog_store": str(tmp_path / "catalogs.sqlite")}))
    service.start()
    try:
        await until(lambda: bool(service.status()["connected"]), 15, "ingest connected")
        async with uplink(broker, pki, B, tmp_path / "b", listener) as up_b:
            async with uplink(broker, pki, A, tmp_path / "a", listener) as up_a:
                up_a.on_samples(reading(21.5))
                up_b.on_samples(reading(22.5))
                up_a.on_alarm_events([event(1)])
                up_b.on_alarm_events([dataclasses.replace(event(1), rule="b_rule")])
                await until(lambda: {21.5} <= temperatures(vm).get(("site-1", "gw-a"), set())
                            and {22.5} <= temperatures(vm).get(("site-1", "gw-b"), set()),
                            30, "A's and B's first readings in the database")
            # A's uplink stops while its credentials are used against B (both at once would
            # take each other's place: one client id per identity), then runs again
            answers, offline_ms = await asyncio.to_thread(spoof, pki, broker, clients,
                                                          listener == "password")
            async with uplink(broker, pki, A, tmp_path / "a", listener) as up_a:
                # after the spoofs, B and A carry on: the ingest is still taking their data
                up_b.on_samples(reading(23.5))
                up_a.on_samples(reading(24.5))
                if acl:
                    await until(lambda: {22.5, 23.5} <= temperatures(vm)[("site-1", "gw-b")]
                                and {21.5, 24.5} <= temperatures(vm)[("site-1", "gw-a")], 30,
                                "A's and B's later readings")
                else:
                    await until(lambda: SPOOF_VALUE in temperatures(vm)[("site-1", "gw-b")]
                                and ("site-x", "gw-x") in temperatures(vm), 30,
                                "the spoofs, which nothing stops without the ACL")
                await until(lambda: {("site-1", "gw-a", "high_temp"),
                                     ("site-1", "gw-b", "b_rule")} <= alarm_rules(vm), 30,
                            "A's and B's alarm events")
                await until(lambda: service.status()["pending"] == 0, 10, "the ingest idle")
    finally:
        service.stop()
        broker.stop()
    return service, answers, offline_ms


@pytest.mark.parametrize("listener", ["certificate", "password"])
async def test_a_gateway_cannot_publish_as_another_and_the_ingest_gets_everything_legitimate(
        listener: str, tmp_path: Path, pki: Pki, victoria: Victoria,
        clients: list[Client]) -> None:
    """The real uplinks and the real ingest log in with the shipped identities as their
    settings allow today (certificate, or username and password file) — no code change."""
    service, answers, offline_ms = await _scenario(tmp_path, pki, victoria, clients,
                                                   acl=True, listener=listener)
    assert answers == ["Not authorized"] * 6  # A's five spoofs and the operator's telemetry
    values = temperatures(victoria)
    assert values[("site-1", "gw-b")] == {22.5, 23.5}, "B's series holds B's readings only"
    assert values[("site-1", "gw-a")] == {21.5, 24.5}, "A's series holds A's readings only"
    assert set(values) == {("site-1", "gw-a"), ("site-1", "gw-b")}, "no invented site"
    assert alarm_rules(victoria) == {("site-1", "gw-a", "high_temp"),
                                     ("site-1", "gw-b", "b_rule")}, "no spoofed all-clear"
    # the spoofs never reached the ingest at all (not even as dead letters)
    assert service.status()["dead_lettered"] == 0
    online = gateway_online(victoria, "gw-b")
    assert 1 in online.values(), "B's own states arrived"
    assert offline_ms not in online, "the forged offline state did not"


async def test_a_gateway_installed_with_another_gateways_certificate_is_refused_and_says_so(
        tmp_path: Path, pki: Pki, shipped_broker: ShippedBroker, clients: list[Client]) -> None:
    """Config says B, certificate says A: every publish is refused (MQTT 5), the uplink reports
    it and keeps its outbox for when it has the right identity; nothing reaches the reader."""
    ingest = Client(shipped_broker, pki, pki["ingest"])
    clients.append(ingest)
    ingest.subscribe("roomwarden/#")
    site_b, gw_b = B.split("/")
    up = Uplink(settings(shipped_broker.port, protocol="5", tls=tls(pki, A)), site_b, gw_b,
                tmp_path / "state", SystemClock(), POINTS)
    task = asyncio.create_task(up.run())
    try:
        await until(lambda: up.status().connected, 15, "connected (TLS with A's certificate)")
        up.on_samples(reading(21.5))
        await until(lambda: "Not authorized" in (up.status().last_error or ""), 15,
                    "the refusal reported")
        assert up.status().last_error == "publish refused: Not authorized"
        assert up.outbox.depth() >= 1 and up.status().published == 0
    finally:
        await up.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert ingest.topics() == set()


async def test_without_the_acl_the_same_spoofs_reach_the_database(
        tmp_path: Path, pki: Pki, victoria: Victoria, clients: list[Client]) -> None:
    """What breaks without the ACL (and proves the test above can fail): every spoof is
    accepted and written as if the gateway had sent it."""
    _service, answers, offline_ms = await _scenario(tmp_path, pki, victoria, clients,
                                                    acl=False)
    assert "Not authorized" not in answers
    values = temperatures(victoria)
    assert SPOOF_VALUE in values[("site-1", "gw-b")]
    assert INVENTED_VALUE in values[("site-x", "gw-x")]
    assert OPERATOR_VALUE in values[("site-1", "gw-a")]
    assert ("site-1", "gw-b", "spoof.all_clear") in alarm_rules(victoria)
    online = gateway_online(victoria, "gw-b")  # the forged offline state, written at its time
    assert online[max(online)] == 0 and max(online) >= offline_ms  # (or just after gw-b's last)


@pytest.mark.parametrize("listener", ["certificate", "password"])
def test_a_gateway_cannot_read_another_gateways_commands(
        listener: str, shipped_broker: ShippedBroker, pki: Pki,
        clients: list[Client]) -> None:
    pw = listener == "password"
    a = Client(shipped_broker, pki, pki[A], password=pw)
    b = Client(shipped_broker, pki, pki[B], password=pw)
    op = Client(shipped_broker, pki, pki["operator"], password=pw)
    clients.extend([a, b, op])
    a.subscribe(f"roomwarden/{B}/cmd", "roomwarden/+/+/cmd", "$share/x/roomwarden/+/+/cmd",
                "#", f"roomwarden/{A}/cmd")
    b.subscribe(f"roomwarden/{B}/cmd")
    assert op.publish(f"roomwarden/{B}/cmd", b"for b") == "Success"
    assert op.publish(f"roomwarden/{A}/cmd", b"for a") == "Success"
    wait_for(lambda: (f"roomwarden/{A}/cmd", b"for a") in a.topics()
             and (f"roomwarden/{B}/cmd", b"for b") in b.topics(), what="each its own cmd")
    time.sleep(0.3)
    assert a.topics() == {(f"roomwarden/{A}/cmd", b"for a")}



def test_the_broker_refuses_a_packet_larger_than_the_contract_allows(
        shipped_broker: ShippedBroker, pki: Pki, clients: list[Client]) -> None:
    """`max_packet_size`: the contract's largest payload passes, anything much bigger is
    refused by the broker itself (MQTT 3.1.1, so the client does not refuse it first) and the
    sender disconnected; the ingest never sees it."""
    ingest = Client(shipped_broker, pki, pki["ingest"])
    a = Client(shipped_broker, pki, pki[A], protocol=mqtt.MQTTv311)
    clients.extend([ingest, a])
    ingest.subscribe(f"roomwarden/{A}/telemetry")
    topic = f"roomwarden/{A}/telemetry"
    largest = b"x" * MAX_PAYLOAD_BYTES
    assert a.publish(topic, largest) == "Success"
    wait_for(lambda: (topic, largest) in ingest.topics(), what="the largest payload")
    disconnected = threading.Event()
    a.client.on_disconnect = lambda *_a: disconnected.set()
    a.client.publish(topic, b"y" * (MAX_PAYLOAD_BYTES + 1024 * 1024), qos=1)
    assert disconnected.wait(10), "the broker kept a client that sent 3 MiB"
    time.sleep(0.3)
    assert {len(p) for _t, p in ingest.topics()} == {MAX_PAYLOAD_BYTES}
    log = shipped_broker.log.read_text()
    assert "disconnected due to oversize packet" in log, log[-2000:]


def connects(broker: ShippedBroker, pki: Pki, name: str) -> bool:
    try:
        Client(broker, pki, pki[name], connect_timeout=3).close()
    except (ConnectionError, OSError):  # ssl.SSLError is an OSError
        return False
    return True


def test_a_revoked_certificate_connects_no_more(tmp_path: Path) -> None:
    """`issue-cert.sh revoke` writes the CRL the shipped config names; after a reload
    (SIGHUP) the revoked certificate cannot connect, while the others, and a new certificate
    for the same gateway, can."""
    pki = make_pki(tmp_path / "pki", [("site-1", "gw-a"), ("site-1", "gw-b")], ["ingest"])
    broker = ShippedBroker(tmp_path / "broker", pki)
    broker.start()
    try:
        assert connects(broker, pki, A) and connects(broker, pki, B)
        issue(pki.dir, "revoke", str(pki[A].cert))
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "Reloading config" in broker.log.read_text(), what="the reload")
        assert not connects(broker, pki, A)
        assert connects(broker, pki, B) and connects(broker, pki, "ingest")
        assert "certificate verify failed" in broker.log.read_text()
        # the gateway gets a new certificate under the same name (the old files moved away)
        for old in (pki[A].cert, pki[A].key):
            old.rename(old.with_name(old.name + ".revoked"))
        issue(pki.dir, "gateway", *A.split("/"))
        assert connects(broker, pki, A)
    finally:
        broker.stop()


def test_retained_messages_are_delivered_only_to_those_who_may_read_them(
        shipped_broker: ShippedBroker, pki: Pki, clients: list[Client]) -> None:
    """A subscriber that arrives later gets a retained message only if it may read it."""
    b = Client(shipped_broker, pki, pki[B])
    clients.append(b)
    for channel in ("state", "config/status", "alarms/active"):
        # nobody subscribes yet: accepted and kept, "no matching subscribers"
        assert b.publish(f"roomwarden/{B}/{channel}", channel.encode(),
                         retain=True) == "No matching subscribers"
    late = {name: Client(shipped_broker, pki, pki[name]) for name in (A, "ingest", "operator")}
    clients.extend(late.values())
    for c in late.values():
        c.subscribe("#")
    want = {"ingest": {"state", "config/status", "alarms/active"},
            "operator": {"config/status"}, A: set()}
    wait_for(lambda: all({p.decode() for _t, p in late[n].topics()} >= want[n] for n in want),
             what="the retained messages each may read")
    time.sleep(0.3)
    assert {n: {p.decode() for _t, p in late[n].topics()} for n in want} == want


def test_no_client_can_take_over_another_identitys_session(
        shipped_broker: ShippedBroker, pki: Pki, clients: list[Client]) -> None:
    """An identity's client id is its name (`use_username_as_clientid`): gateway A connecting
    with the ingest's configured client id neither disconnects the ingest nor takes over its
    persistent session — which, under the ACL, would silently drop what the broker queued for
    the ingest."""
    ingest = Client(shipped_broker, pki, pki["ingest"], client_id="ingest-1", persistent=True)
    ingest.subscribe("roomwarden/+/+/telemetry")
    ingest.close()  # away: the broker queues for it
    b = Client(shipped_broker, pki, pki[B])
    clients.append(b)
    assert b.publish(f"roomwarden/{B}/telemetry", b"queued") == "Success"
    intruder = Client(shipped_broker, pki, pki[A], client_id="ingest-1", persistent=True)
    assert not intruder.session_present, "A got the ingest's session"
    intruder.close()
    Client(shipped_broker, pki, pki[A], client_id="ingest").close()  # the name, as client id
    ingest = Client(shipped_broker, pki, pki["ingest"], client_id="ingest-1", persistent=True)
    clients.append(ingest)
    assert ingest.session_present
    wait_for(lambda: (f"roomwarden/{B}/telemetry", b"queued") in ingest.topics(),
             what="what was queued while the ingest was away")
    intruder = Client(shipped_broker, pki, pki[A], client_id="ingest-1")
    clients.append(intruder)
    assert b.publish(f"roomwarden/{B}/telemetry", b"live") == "Success"
    wait_for(lambda: (f"roomwarden/{B}/telemetry", b"live") in ingest.topics(),
             what="the ingest still connected and reading")
    assert ingest.client.is_connected() and not intruder.topics()
