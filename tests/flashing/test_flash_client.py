"""`roomwarden flash` against a real mosquitto, answered by a scripted fake gateway: a real
MQTT client that verifies envelopes with verify_envelope and a real ConfigStore, and answers
on config/status as the gateway does (the real gateway side lives in gateway.flashing.apply)."""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from gateway.contract.wire import Channel, ConfigStatus, Topic, encode
from gateway.flashing.cli import add_parsers
from gateway.flashing.envelope import EnvelopeRejected, verify_envelope
from gateway.flashing.flash_client import FlashError, parse_broker_url
from gateway.flashing.keys import TrustedKey, load_public_key, new_key_pair
from gateway.flashing.store import ConfigMeta, ConfigStore
from gateway.localservices import free_port
from tests.fixtures.services import Broker

ROOT = Path(__file__).resolve().parents[2]
SITE_FILE = ROOT / "firmware_configs" / "telecom_equipment_room.yaml"
SITE, GW = "gz-tianhe-exchange", "fsu-gz-tianhe-0301"

Behaviour = Literal["apply", "rollback", "silent"]
State = Literal["received", "rejected", "staged", "applying", "applied", "rolled_back"]


class FakeGateway:
    """The gateway's side of the flash protocol, scripted."""

    def __init__(self, port: int, store_dir: Path, trusted: list[TrustedKey], *,
                 behaviour: Behaviour = "apply", root: str = "roomwarden") -> None:
        self.store = ConfigStore(store_dir)
        self.trusted = trusted
        self.behaviour = behaviour
        self.received: list[bytes] = []
        self.set_topic = str(Topic(SITE, GW, Channel.CONFIG_SET, root))
        self.status_topic = str(Topic(SITE, GW, Channel.CONFIG_STATUS, root))
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fake-{GW}")

        def on_connect(c: mqtt.Client, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
            c.subscribe(self.set_topic, qos=1)

        def on_subscribe(_c: mqtt.Client, _u: Any, _m: int, _rc: Any, _p: Any) -> None:
            self.ready.set()

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = lambda _c, _u, msg: self.handle(bytes(msg.payload))
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self.ready.wait(5)

    def say(self, state: State, request_id: str | None, *, version: int | None = None,
            sha256: str | None = None, code: str | None = None,
            error: str | None = None) -> None:
        active = self.store.active_meta()
        status = ConfigStatus(site=SITE, gateway=GW, id=request_id, ts=time.time_ns(),
                              state=state, code=code, version=version, sha256=sha256,
                              error=error, active_version=active.version if active else 0,
                              active_sha256=active.sha256 if active else None)
        self.client.publish(self.status_topic, encode(status), qos=1, retain=True)

    def handle(self, raw: bytes) -> None:
        self.received.append(raw)
        if self.behaviour == "silent":
            return
        try:
            request_id = json.loads(raw).get("id")
        except ValueError:
            request_id = None
        self.say("received", request_id)
        try:
            env = verify_envelope(raw, gateway_id=GW, trusted=self.trusted, max_bytes=64 * 1024)
            self.store.check_fresh(env)
        except EnvelopeRejected as exc:
            self.say("rejected", request_id, code=exc.code, error=exc.message)
            return
        self.store.remember(env)
        self.store.stage(env)
        self.say("staged", env.id, version=env.version, sha256=env.sha256)
        self.say("applying", env.id, version=env.version, sha256=env.sha256)
        if self.behaviour == "apply":
            self.store.commit()
            self.say("applied", env.id, version=env.version, sha256=env.sha256)
        else:
            self.store.discard()
            self.say("rolled_back", env.id, version=env.version, sha256=env.sha256,
                     code="health_check_failed", error="device th-tx-a03 went offline")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    ops, _ = new_key_pair(tmp_path / "keys", "ops")
    other, _ = new_key_pair(tmp_path / "keys", "intruder")
    return {"ops": ops, "intruder": other}


@pytest.fixture
def gateway_factory(broker: Broker, tmp_path: Path, keys: dict[str, Path]) -> Any:
    made: list[FakeGateway] = []

    def make(behaviour: Behaviour = "apply", active: int | None = 3) -> FakeGateway:
        fake = FakeGateway(broker.port, tmp_path / "gw-state", [load_public_key(
            keys["ops"].with_suffix(".pub"))], behaviour=behaviour)
        if active is not None:  # a gateway that runs version `active`, and says so
            text = f"# version {active}\n"
            fake.store.stage(text, ConfigMeta(version=active, source="local", sha256=hashlib
                                              .sha256(text.encode()).hexdigest()))
            fake.store.commit()
            fake.say("applied", None)
        made.append(fake)
        return fake

    yield make
    for fake in made:
        fake.close()


def flash(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="roomwarden")
    add_parsers(parser.add_subparsers())
    args = parser.parse_args(["flash", *argv])
    result: int = args.func(args)
    return result


def args_for(broker: Broker, key: Path, *extra: str, config: Path = SITE_FILE) -> list[str]:
    return [str(config), "--gateway", GW, "--broker", f"mqtt://127.0.0.1:{broker.port}",
            "--key", str(key), "--timeout", "10s", *extra]


def test_flash_is_applied(broker: Broker, keys: dict[str, Path], gateway_factory: Any,
                          capsys: pytest.CaptureFixture[str]) -> None:
    fake = gateway_factory()
    assert flash(*args_for(broker, keys["ops"])) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"checked {SITE_FILE}: gateway {GW} at {SITE}")
    out = [out[0], *(line for line in out[1:] if not line.startswith("  warning: "))]  # check's
    assert out[1].startswith("the gateway runs version 3")
    assert out[1].endswith("sending version 4")
    assert out[2].startswith("sent version 4 signed by ops (key ") and "request flash-" in out[2]
    assert [line.split(":")[0] for line in out[3:]] == ["received", "staged", "applying",
                                                        "applied"]
    active = fake.store.active_meta()
    assert active is not None and active.version == 4 and active.author == "ops"
    assert active.sha256 == hashlib.sha256(SITE_FILE.read_bytes()).hexdigest()
    # the next flash picks the next version by itself
    assert flash(*args_for(broker, keys["ops"], "--author", "li.wei")) == 0
    assert fake.store.active_meta().version == 5
    assert fake.store.active_meta().author == "li.wei"


def test_refusals_are_reported_with_their_reason(broker: Broker, keys: dict[str, Path],
                                                  gateway_factory: Any,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    fake = gateway_factory()
    assert flash(*args_for(broker, keys["intruder"])) == 1
    out = capsys.readouterr().out
    assert "REJECTED [untrusted_key]: key " in out and "running version 3" in out
    assert flash(*args_for(broker, keys["ops"], "--version", "2")) == 1
    assert ("REJECTED [downgrade]: version 2 is not above the highest accepted (3); a "
            "downgrade needs --force") in capsys.readouterr().out
    assert flash(*args_for(broker, keys["ops"], "--version", "2", "--force")) == 0
    assert "sent version 2 (forced)" in capsys.readouterr().out
    assert fake.store.active_meta().version == 2
    # another envelope under the running config's version: a downgrade, force or not (it was
    # called `replayed`, which is for an envelope seen before)
    assert flash(*args_for(broker, keys["ops"], "--version", "2", "--force")) == 1
    assert ("REJECTED [downgrade]: version 2 is not above the highest accepted (2): it is the "
            "running config's version, which no other config may reuse, even with --force; "
            "send version 3") in capsys.readouterr().out
    assert flash(*args_for(broker, keys["ops"], "--version", "2")) == 1
    assert "REJECTED [downgrade]: version 2 is not above the highest accepted (2): it is the " \
        "running config's version" in capsys.readouterr().out


def test_a_rollback_is_a_failure(broker: Broker, keys: dict[str, Path],
                                 gateway_factory: Any,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    fake = gateway_factory(behaviour="rollback")
    assert flash(*args_for(broker, keys["ops"])) == 1
    out = capsys.readouterr().out
    assert ("ROLLED BACK [health_check_failed]: device th-tx-a03 went offline; running "
            "version 3") in out
    assert fake.store.active_meta().version == 3
    # the rolled-back version is burnt: the next flash uses the one after it
    fake.behaviour = "apply"
    assert flash(*args_for(broker, keys["ops"])) == 0
    assert "sending version 5" in capsys.readouterr().out


def test_a_silent_gateway_times_out(broker: Broker, keys: dict[str, Path],
                                    gateway_factory: Any,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    fake = gateway_factory(behaviour="silent", active=None)
    argv = args_for(broker, keys["ops"])
    argv[argv.index("--timeout") + 1] = "1s"
    started = time.monotonic()
    assert flash(*argv) == 1
    assert time.monotonic() - started < 8
    out = capsys.readouterr().out
    assert "has not reported its config" in out and "sending version 1" in out
    assert "no final answer from the gateway within 1s" in out
    assert len(fake.received) == 1


def test_an_invalid_config_is_not_sent(broker: Broker, keys: dict[str, Path],
                                       gateway_factory: Any, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    fake = gateway_factory()
    data = yaml.safe_load(SITE_FILE.read_text())
    data["devices"][0]["room"] = "no-such-room"
    data["profiles_dir"] = str(ROOT / "hardware" / "profiles")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True))
    assert flash(*args_for(broker, keys["ops"], config=bad)) == 2
    err = capsys.readouterr().err
    # as `roomwarden check` prints it (tests/cli/test_flash_checks_like_check.py)
    assert f"FAIL {bad}: 1 error(s)\n" in err and f"nothing was sent: {bad} has 1 error(s)" in err
    assert f"devices[{data['devices'][0]['id']}].room: room 'no-such-room' is not defined" in err
    other = args_for(broker, keys["ops"])
    other[other.index("--gateway") + 1] = "gw-other"
    assert flash(*other) == 2
    assert f"is the config of gateway {GW}, not gw-other" in capsys.readouterr().err
    time.sleep(0.3)
    assert fake.received == []


def test_local_problems_exit_2(tmp_path: Path, keys: dict[str, Path],
                               capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nothing listens there
    argv = [str(SITE_FILE), "--gateway", GW, "--broker", f"mqtt://127.0.0.1:{port}",
            "--key", str(keys["ops"])]
    assert flash(*argv) == 2
    assert "cannot connect to 127.0.0.1" in capsys.readouterr().err
    assert flash(*argv[:-1], str(tmp_path / "missing.key")) == 2
    assert "no such key file" in capsys.readouterr().err
    assert flash(*argv, "--timeout", "soon") == 2
    assert "not a duration" in capsys.readouterr().err


def test_parse_broker_url() -> None:
    assert parse_broker_url("mqtt://broker.lan:1884") == parse_broker_url("broker.lan:1884")
    assert parse_broker_url("mqtt://h").port == 1883
    tls = parse_broker_url("mqtts://h")
    assert (tls.host, tls.port, tls.tls) == ("h", 8883, True)
    for bad in ("http://h", "mqtt://", "mqtt://h:99999", "mqtt://u:p@h", "mqtt://h/x"):
        with pytest.raises(FlashError):
            parse_broker_url(bad)


def test_a_profiles_dir_is_said_not_to_travel_with_the_config(
        broker: Broker, keys: dict[str, Path], gateway_factory: Any, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The flashing audit: `check` and `flash` passed a config whose profiles_dir held
    profiles only on the laptop; the gateway refused it. The technician is told before it
    is sent."""
    gateway_factory()
    data = yaml.safe_load(SITE_FILE.read_text())
    data["profiles_dir"] = str(ROOT / "hardware" / "profiles")
    site = tmp_path / "with_profiles.yaml"
    site.write_text(yaml.safe_dump(data, allow_unicode=True))
    assert flash(*args_for(broker, keys["ops"], config=site)) == 0
    out = capsys.readouterr().out
    assert f"warning: profiles_dir {data['profiles_dir']!r} is not sent with the config" in out
    assert flash(*args_for(broker, keys["ops"])) == 0  # without one: no such warning
    assert "is not sent with the config" not in capsys.readouterr().out
