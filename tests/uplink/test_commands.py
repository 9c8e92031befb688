"""Inbound MQTT against a real mosquitto: signed commands on `cmd` (applied once, answered on
`cmd/result`, replayed / expired / retained / refused / garbage ones answered with their code
or counted, never fatal),
`config/set` handed on raw, `config/status` retained, the periodic GatewayState and the
publish-latency figures; and a remote acknowledge through the whole daemon silencing a siren
on a simulated relay module."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from gateway.clock import Clock, ManualClock, SystemClock
from gateway.config.loader import load_gateway_config
from gateway.config.section import replaced, validator
from gateway.contract.vocab import ContractError
from gateway.contract.wire import (
    ActiveAlarmsSnapshot,
    AlarmCommand,
    AlarmRef,
    CommandResult,
    ConfigStatus,
    GatewayState,
    Message,
    MessageKind,
    PointCatalog,
    RequestState,
    decode,
    encode,
)
from gateway.daemon import Gateway
from gateway.operator.inbox import CommandInbox
from gateway.operator.refusals import NOT_APPLICABLE, Refused
from gateway.operator.replay import ReplayMemory
from gateway.sim.signals import Constant
from gateway.sim.site import SimulatedSite
from gateway.uplink import state_requests
from gateway.uplink.publisher import LATENCY_BUCKETS, Uplink
from gateway.uplink.session import MAX_INBOUND_PENDING
from gateway.uplink.settings import UplinkSettings
from tests.fixtures.operators import Keys, OperatorKeyPair
from tests.uplink import strategies as s
from tests.uplink.conftest import Broker, Subscriber
from tests.uplink.test_publisher import GW, POINTS, PREFIX, SITE, of, samples, settings, until

CMD = PREFIX + "cmd"
PROTOCOLS = pytest.mark.parametrize("protocol", ["3.1.1", "5"])
SHA_A, SHA_B = hashlib.sha256(b"a").hexdigest(), hashlib.sha256(b"b").hexdigest()


class Commander:
    """The central side: publishes commands (QoS 1) and waits for the broker's PUBACK."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"test-cmd-{os.getpid()}-{id(self)}")
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def send(self, payload: bytes | Message, *, topic: str = CMD, retain: bool = False) -> None:
        data = payload if isinstance(payload, bytes) else encode(payload)
        info = self.client.publish(topic, data, qos=1, retain=retain)
        info.wait_for_publish(5)
        assert info.is_published(), "the broker did not acknowledge the command"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def commander(broker: Broker) -> Iterator[Commander]:
    c = Commander(broker.port)
    yield c
    c.close()


def ack(cid: str, signer: OperatorKeyPair, *, note: str | None = None,
        expires_in: float = 60.0, clock: Clock | None = None) -> AlarmCommand:
    """A signed acknowledge (issued `expires_in` before it expires; negative: expired)."""
    now = (clock or SystemClock()).now_ns()
    issued = now if expires_in > 0 else now + int((expires_in - 60) * 1e9)
    return signer.sign(GW, site=SITE, id=cid, action="acknowledge", note=note, now_ns=issued,
                       lifetime_s=60.0 if expires_in <= 0 else expires_in,
                       alarms=[AlarmRef(rule="high_temp", subject="th-1.temperature")])


def results(sub: Subscriber) -> list[CommandResult]:
    out = []
    for m in sub.snapshot(of("cmd/result")):
        msg = decode(m.topic, m.payload)
        assert isinstance(msg, CommandResult)
        out.append(msg)
    return out


def results_for(sub: Subscriber, cid: str) -> list[CommandResult]:
    return [r for r in results(sub) if r.id == cid]


def decoded(sub: Subscriber, channel: str) -> list[Message]:
    return [decode(m.topic, m.payload) for m in sub.snapshot(of(channel))]


class Handler:
    """Carries out commands by recording them (with the actor the inbox names); a note of
    `refuse-me` makes it refuse, `crash` makes it fail."""

    def __init__(self) -> None:
        self.commands: list[tuple[AlarmCommand, str]] = []

    def __call__(self, cmd: AlarmCommand, actor: str) -> int:
        self.commands.append((cmd, actor))
        note = getattr(cmd, "note", None)
        if note == "refuse-me":
            raise Refused(NOT_APPLICABLE, "th-1.temperature is normal; nothing to acknowledge")
        if note == "crash":
            raise RuntimeError("a bug in the handler")
        return 1

    def ids(self) -> list[str]:
        return [c.id for c, _actor in self.commands]


def inbox(handler: Handler, keys: Keys, state_dir: Path,
          clock: Clock | None = None) -> CommandInbox:
    """The daemon's inbox: trusts the test keys, remembers ids in `state_dir`."""
    clock = clock or SystemClock()
    policy = keys.settings()
    memory = ReplayMemory(state_dir / "operator" / "commands.sqlite", clock,
                          skew_ns=300_000_000_000)
    return CommandInbox(SITE, GW, clock, carry_out=handler, policy=lambda: policy,
                        memory=memory)


@contextlib.asynccontextmanager
async def uplink(s_: UplinkSettings, state_dir: Path, *, clock: Clock | None = None,
                 **kw: Any) -> AsyncIterator[Uplink]:
    up = Uplink(s_, SITE, GW, state_dir, clock or SystemClock(), POINTS, **kw)
    task = asyncio.create_task(up.run())
    try:
        yield up
        assert not task.done(), "run() ended"
    finally:
        await up.close()


# ------------------------------------------------------------------------------ commands

@PROTOCOLS
async def test_commands_are_applied_once_answered_and_stale_ones_refused(
        protocol: str, broker: Broker, subscribers: list[Subscriber], commander: Commander,
        tmp_path: Path, keys: Keys) -> None:
    sub = Subscriber(broker.port, PREFIX + "cmd/result")
    subscribers.append(sub)
    handler = Handler()
    state = tmp_path / "state"
    async with uplink(settings(broker.port, protocol=protocol), state,
                      inbox=inbox(handler, keys, state)) as up:
        await until(lambda: up.status().subscribed, what="connect")

        first_cmd = ack("a1", keys.zhang)
        commander.send(first_cmd)
        await until(lambda: len(results_for(sub, "a1")) == 1, what="result a1")
        first = results_for(sub, "a1")[0]
        assert first.ok and first.error is None and (first.site, first.gateway) == (SITE, GW)
        assert first.actor == "Zhang Wei (NOC)" and first.changed == 1
        assert handler.ids() == ["a1"]
        assert handler.commands[0][1] == "Zhang Wei (NOC)"  # the key's owner

        # redelivered (at least once) or replayed: refused as such, not applied again
        commander.send(first_cmd)
        await until(lambda: len(results_for(sub, "a1")) == 2, what="second answer to a1")
        again = results_for(sub, "a1")[1]
        assert not again.ok and again.code == "replayed" and "(ok)" in (again.error or "")
        assert handler.ids() == ["a1"]

        commander.send(ack("a2", keys.zhang, expires_in=-5))
        await until(lambda: len(results_for(sub, "a2")) == 1, what="result a2")
        expired = results_for(sub, "a2")[0]
        assert not expired.ok and expired.code == "expired" and "expired" in (expired.error
                                                                              or "")
        assert "a2" not in handler.ids()

        commander.send(ack("a3", keys.zhang, note="refuse-me"))
        await until(lambda: len(results_for(sub, "a3")) == 1, what="result a3")
        assert results_for(sub, "a3")[0] == CommandResult(
            site=SITE, gateway=GW, id="a3", ts=results_for(sub, "a3")[0].ts, ok=False,
            code="not_applicable", actor="Zhang Wei (NOC)",
            error="th-1.temperature is normal; nothing to acknowledge")

        commander.send(ack("a4", keys.zhang, note="crash"))
        await until(lambda: len(results_for(sub, "a4")) == 1, what="result a4")
        assert results_for(sub, "a4")[0].error == "failed: RuntimeError"
        assert results_for(sub, "a4")[0].code == "failed"

        commander.send(keys.zhang.sign(GW, site=SITE, id="a5", action="acknowledge_all", room="r1"))
        await until(lambda: len(results_for(sub, "a5")) == 1, what="result a5")
        assert results_for(sub, "a5")[0].ok and handler.ids()[-1] == "a5"

        st_ = up.status()
        assert (st_.commands_received, st_.commands_duplicate, st_.commands_refused,
                st_.commands_bad) == (6, 1, 3, 0)
        assert st_.connected


async def test_alarm_commands_without_trusted_keys_are_refused_not_dropped(
        broker: Broker, subscribers: list[Subscriber], commander: Commander,
        tmp_path: Path, keys: Keys) -> None:
    sub = Subscriber(broker.port, PREFIX + "cmd/result")
    subscribers.append(sub)
    async with uplink(settings(broker.port), tmp_path / "state") as up:
        await until(lambda: up.status().subscribed, what="connect")
        commander.send(ack("n1", keys.zhang))
        await until(lambda: len(results_for(sub, "n1")) == 1, what="result")
        answer = results_for(sub, "n1")[0]
        assert not answer.ok and answer.code == "untrusted_key"


async def test_a_retained_command_is_never_applied(
        broker: Broker, subscribers: list[Subscriber], commander: Commander,
        tmp_path: Path, keys: Keys) -> None:
    stale = ack("stale-1", keys.zhang, expires_in=600)
    commander.send(stale, retain=True)  # waiting at the broker
    sub = Subscriber(broker.port, PREFIX + "cmd/result")
    subscribers.append(sub)
    handler = Handler()
    state = tmp_path / "state"
    async with uplink(settings(broker.port), state, inbox=inbox(handler, keys, state)) as up:
        await until(lambda: len(results_for(sub, "stale-1")) == 1, what="answer")
        answer = results_for(sub, "stale-1")[0]
        assert not answer.ok and answer.code == "retained"
        assert answer.error is not None and "retained" in answer.error
        assert handler.commands == []
        commander.send(ack("fresh-1", keys.zhang))  # a live one is applied
        await until(lambda: len(results_for(sub, "fresh-1")) == 1, what="fresh answer")
        assert handler.ids() == ["fresh-1"] and up.status().commands_refused == 1


async def test_request_state_republishes_state_catalog_and_active_alarms(
        broker: Broker, subscribers: list[Subscriber], commander: Commander,
        tmp_path: Path) -> None:
    sub = Subscriber(broker.port, [PREFIX + "state", PREFIX + "meta", PREFIX + "alarms/active",
                                   PREFIX + "cmd/result"])
    subscribers.append(sub)
    async with uplink(settings(broker.port), tmp_path / "state") as up:
        await until(lambda: up.status().subscribed, what="connect")
        up.set_active_alarms([], seq=5)
        await until(lambda: len(sub.snapshot(of("alarms/active"))) == 1
                    and len(sub.snapshot(of("meta"))) == 1
                    and len(sub.snapshot(of("state"))) >= 1, what="birth")
        states = len(sub.snapshot(of("state")))
        commander.send(RequestState(id="rs-1", ts=time.time_ns(), actor="ingest",
                                    action="request_state"))
        await until(lambda: len(results_for(sub, "rs-1")) == 1, what="result")
        await until(lambda: len(sub.snapshot(of("alarms/active"))) == 2
                    and len(sub.snapshot(of("meta"))) == 2
                    and len(sub.snapshot(of("state"))) > states, what="state again")
        assert results_for(sub, "rs-1")[0].ok
        snapshot = decoded(sub, "alarms/active")[-1]
        assert isinstance(snapshot, ActiveAlarmsSnapshot) and snapshot.seq == 5
        assert isinstance(decoded(sub, "meta")[-1], PointCatalog)
        state = decoded(sub, "state")[-1]
        assert isinstance(state, GatewayState) and state.status == "online"


async def test_bad_payloads_are_counted_and_answered_when_their_id_is_readable(
        broker: Broker, subscribers: list[Subscriber], commander: Commander, tmp_path: Path,
        caplog: pytest.LogCaptureFixture, keys: Keys) -> None:
    sub = Subscriber(broker.port, PREFIX + "cmd/result")
    subscribers.append(sub)
    handler = Handler()
    state = tmp_path / "state"
    async with uplink(settings(broker.port), state, inbox=inbox(handler, keys, state)) as up:
        await until(lambda: up.status().subscribed, what="connect")
        commander.send(json.dumps({"v": 1, "id": "bad-1", "ts": 1, "actor": "x",
                                   "action": "acknowledge"}).encode())
        commander.send(json.dumps({"v": 1, "id": "bad/2", "action": "reboot"}).encode())
        commander.send(b"\xff\xfe not even utf-8")
        commander.send(b"[" * 100_000)  # nested too deep for json
        commander.send(ack("good-1", keys.zhang))
        await until(lambda: len(results_for(sub, "good-1")) == 1, what="good answer")
        answers = results(sub)
        assert [r.id for r in answers] == ["bad-1", "good-1"]
        assert not answers[0].ok and answers[0].code == "malformed" and answers[0].error == \
            "bad command: cmd: acknowledge.alarms: Field required"
        assert handler.ids() == ["good-1"]
        status = up.status()
        assert (status.commands_received, status.commands_bad, status.commands_refused) == \
            (5, 4, 0)
    bad = [r for r in caplog.records if "event=command_bad" in r.getMessage()]
    assert len(bad) == 4 and all(r.levelname == "ERROR" for r in bad)


GARBAGE = st.one_of(
    st.binary(max_size=300),
    s.json_values.map(s.dumps),
    s.commands.map(encode),
    st.builds(lambda key, value, cmd: json.dumps({**json.loads(encode(cmd)), key: value}
                                                 ).encode(),
              st.sampled_from(["id", "ts", "expires", "action", "alarms", "actor", "v", "x"]),
              s.json_values, s.commands),
)


def test_garbage_on_cmd_never_breaks_the_uplink(broker: Broker, tmp_path: Path,
                                                keys: Keys) -> None:
    """Hypothesis-made payloads on `cmd` while telemetry flows: the uplink keeps its connection,
    answers or counts every one, and publishes every batch."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="uplink-loop", daemon=True)
    thread.start()

    def on_loop(fn: Callable[[], Any]) -> Any:
        async def call() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(call(), loop).result(10)

    def wait(pred: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 15
        while not pred():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.01)

    handler = Handler()
    state = tmp_path / "state"
    up: Uplink = on_loop(lambda: Uplink(settings(broker.port), SITE, GW, state,
                                        SystemClock(), POINTS,
                                        inbox=inbox(handler, keys, state)))
    task: asyncio.Task[None] = on_loop(lambda: loop.create_task(up.run()))
    sub = Subscriber(broker.port, [PREFIX + "telemetry", PREFIX + "cmd/result"])
    commander = Commander(broker.port)
    sent = 0
    try:
        wait(lambda: up.status().subscribed, "connect")

        @hsettings(max_examples=150, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow])
        @given(GARBAGE)
        def publish(payload: bytes) -> None:
            nonlocal sent
            commander.send(payload)
            sent += 1
            wait(lambda: up.status().commands_received == sent, "the payload handled")
            if sent % 10 == 0:  # telemetry keeps flowing in between
                batch = samples(sent)
                on_loop(lambda: up.on_samples(batch))

        publish()
        on_loop(lambda: up.on_samples(samples(10_000)))
        batches = sent // 10 + 1
        wait(lambda: len(sub.snapshot(of("telemetry"))) == batches, "every telemetry batch")
        status = up.status()
        assert status.connected and status.connects == 1 and not task.done()
        assert status.commands_received == sent and 0 < status.commands_bad < sent
        # every payload that decoded got an answer (and so did bad ones with a readable id),
        # but for the request_state folded into a later republish (no answer of their own)
        folded = up.state_requests.coalesced
        wait(lambda: len(results(sub)) >= sent - status.commands_bad - folded, "every answer")
    finally:
        commander.close()
        sub.close()
        asyncio.run_coroutine_threadsafe(up.close(), loop).result(20)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# ------------------------------------------------------------------------------ config/set

async def test_config_set_is_handed_on_raw_and_config_status_is_retained_and_replaced(
        broker: Broker, subscribers: list[Subscriber], commander: Commander,
        tmp_path: Path) -> None:
    got: list[bytes] = []
    raw = b'{"v":1,"id":"flash-1","not":"checked here"}\x00\xff'
    state_dir = tmp_path / "state"
    async with uplink(settings(broker.port), state_dir, on_config_set=got.append) as up:
        await until(lambda: up.status().subscribed, what="connect")
        commander.send(raw, topic=PREFIX + "config/set")
        await until(lambda: len(got) == 1, what="config/set handed on")
        assert got == [raw] and up.status().config_sets == 1

        broker.stop()
        await until(lambda: not up.status().connected, what="outage noticed")
        now = time.time_ns()
        for state in ("received", "staged", "applied"):
            up.publish_config_status(ConfigStatus(site=SITE, gateway=GW, id="flash-1", ts=now,
                                                  state=state, version=8, sha256=SHA_A))
        with pytest.raises(ValueError, match="names"):
            up.publish_config_status(ConfigStatus(site="elsewhere", gateway=GW, ts=now,
                                                  state="applied"))
        topic = PREFIX + "config/status"
        await until(lambda: up.status().queued == 0, what="committed")
        with contextlib.closing(sqlite3.connect(state_dir / "uplink" / "outbox.sqlite")) as db:
            rows = db.execute("SELECT payload FROM messages WHERE topic = ?", (topic,)
                              ).fetchall()
        assert len(rows) == 1, "an unpublished status must be replaced by a newer one"
        stored = decode(topic, rows[0][0])
        assert isinstance(stored, ConfigStatus) and stored.state == "applied"

        broker.start()
        await until(lambda: up.status().subscribed and up.status().outbox.depth == 0,
                    what="reconnected and sent")
    late = Subscriber(broker.port, topic)
    subscribers.append(late)
    await until(lambda: len(late.snapshot()) == 1, what="retained config/status")
    retained = late.snapshot()[0]
    assert retained.retain
    status = decode(topic, retained.payload)
    assert isinstance(status, ConfigStatus) and status.state == "applied"


# ------------------------------------------------------------------------------ state

def states(sub: Subscriber) -> list[GatewayState]:
    out = []
    for m in sub.snapshot(of("state")):
        msg = decode(m.topic, m.payload)
        assert isinstance(msg, GatewayState)
        out.append(msg)
    return out


async def test_state_is_refreshed_periodically(
        broker: Broker, subscribers: list[Subscriber], tmp_path: Path) -> None:
    sub = Subscriber(broker.port, PREFIX + "state")
    subscribers.append(sub)
    async with uplink(settings(broker.port, state_interval="200ms"), tmp_path / "state",
                      devices=lambda: (3, 4)) as up:
        await until(lambda: up.status().subscribed, what="connect")
        up.on_samples(samples(0))
        await until(lambda: len(states(sub)) >= 4, what="periodic states")
        online = [x for x in states(sub) if x.status == "online"]
        assert len(online) >= 4
        assert [x.ts for x in online] == sorted(x.ts for x in online)
        for x in online:
            assert x.outbox is not None and x.outbox.budget > 0
            assert (x.devices_online, x.devices_total) == (3, 4)
            assert set(x.dropped) == set(MessageKind) and x.boot is not None
            assert x.software and x.catalog


async def test_state_goes_at_once_when_devices_or_config_identity_change(
        broker: Broker, subscribers: list[Subscriber], tmp_path: Path) -> None:
    sub = Subscriber(broker.port, PREFIX + "state")
    subscribers.append(sub)
    devices = [1, 4]
    # a 1-hour interval: every state after the birth is caused by a change
    async with uplink(settings(broker.port, state_interval="1h"), tmp_path / "state",
                      devices=lambda: (devices[0], devices[1])) as up:
        await until(lambda: up.status().subscribed, what="connect")
        await until(lambda: len(states(sub)) >= 1, what="birth")
        birth = states(sub)[-1]
        assert (birth.devices_online, birth.devices_total) == (1, 4)
        assert birth.config_version is None and birth.config_hash is None

        devices[0] = 3  # noticed by a poll: the devices figure is checked when samples arrive
        up.on_samples(samples(0))
        await until(lambda: states(sub)[-1].devices_online == 3, what="devices changed")
        up.set_config_identity(7, SHA_B)
        await until(lambda: states(sub)[-1].config_version == "7", what="identity changed")
        assert states(sub)[-1].config_hash == SHA_B
        count = len(states(sub))
        await asyncio.sleep(1.5)  # nothing changed: nothing more (STATE_CHECK is 1 s)
        assert len(states(sub)) == count
        with pytest.raises(ValueError):
            up.set_config_identity(-1, SHA_B)
        with pytest.raises(ValueError):
            up.set_config_identity(8, "not-a-hash")


async def test_unpublished_states_replace_each_other(
        broker: Broker, subscribers: list[Subscriber], tmp_path: Path) -> None:
    devices = [1, 2]
    state_dir = tmp_path / "state"
    async with uplink(settings(broker.port, state_interval="1h"), state_dir,
                      devices=lambda: (devices[0], devices[1])) as up:
        await until(lambda: up.status().subscribed, what="connect")
        await until(lambda: up.status().published >= 2, what="birth sent")
        broker.stop()
        await until(lambda: not up.status().connected, what="outage noticed")
        for version in (1, 2, 3):
            up.set_config_identity(version, SHA_A)  # each one queues a state at once
            await asyncio.sleep(0.1)
            await until(lambda: up.status().queued == 0, what="state committed")
        devices[0] = 2
        up.on_samples(samples(1))  # the poll that noticed: the devices figure is checked then
        await asyncio.sleep(0.1)
        await until(lambda: up.status().queued == 0, what="committed")
        topic = PREFIX + "state"
        with contextlib.closing(sqlite3.connect(state_dir / "uplink" / "outbox.sqlite")) as db:
            rows = db.execute("SELECT payload FROM messages WHERE topic = ?", (topic,)
                              ).fetchall()
        # the gateway's state is never committed (gateway.uplink.outbox_volatile): the newest
        # one waits in memory, each replacing the one before
        assert rows == [] and up.outbox.depth(MessageKind.STATE) == 1

        broker.start()
        live = Subscriber(broker.port, topic)
        subscribers.append(live)
        await until(lambda: up.status().subscribed and up.status().outbox.depth == 0,
                    what="reconnected and sent")
        await until(lambda: any(x.status == "online" for x in states(live)), what="birth")
        online = [x for x in states(live) if x.status == "online"]
        assert all(x.config_version == "3" and x.devices_online == 2 for x in online)


# ------------------------------------------------------------------------------ latency

async def test_publish_latency_is_measured_from_production_to_puback(
        broker: Broker, tmp_path: Path) -> None:
    clock = ManualClock(start_ns=time.time_ns())
    async with uplink(settings(broker.port, state_interval="1h"), tmp_path / "state",
                      clock=clock) as up:
        await until(lambda: up.status().published >= 2, what="birth and catalog sent")
        before = up.status()
        assert before.latency_count == before.published >= 2  # birth and catalog
        broker.stop()
        await until(lambda: not up.status().connected, what="outage noticed")
        up.on_samples(samples(0))
        await until(lambda: up.status().queued == 0, what="committed")
        clock.advance(42.0)  # the only time that passes on this clock
        broker.start()
        await until(lambda: up.status().latency_count >= before.latency_count + 2,
                    what="batch and new birth acknowledged")
        await until(lambda: up.status().outbox.depth == 0, what="all sent")
        after = up.status()
    assert after.latency_count == after.published
    assert [le for le, _n in after.latency_buckets] == list(LATENCY_BUCKETS)
    counts = dict(after.latency_buckets)
    # the batch waited exactly 42 s on this clock; everything else 0 s
    assert counts[30.0] == after.latency_count - 1 and counts[60.0] == after.latency_count
    assert after.latency_sum_s == pytest.approx(42.0)
    cumulative = [n for _le, n in after.latency_buckets]
    assert cumulative == sorted(cumulative)


def test_latency_histogram_is_cumulative_with_prometheus_bounds(tmp_path: Path) -> None:
    up = Uplink(settings(1), SITE, GW, tmp_path / "state", ManualClock(), POINTS)
    for seconds in (0.0, 0.05, 0.051, 2.5, 299.0, 301.0, 3600.0):
        up._latency.observe(seconds)
    status = up.status()
    got = dict(status.latency_buckets)
    assert got[0.05] == 2 and got[0.1] == 3 and got[2.5] == 4 and got[300.0] == 5
    assert status.latency_count == 7 and status.latency_last_s == 3600.0
    assert status.latency_sum_s == pytest.approx(0.05 + 0.051 + 2.5 + 299 + 301 + 3600)
    asyncio.run(up.close())


# ------------------------------------------------------------------------------ the daemon

REPO = Path(__file__).resolve().parents[2]
SITE_CONFIG = REPO / "firmware_configs" / "telecom_equipment_room.yaml"
SIREN, STROBE = "do-tx-01.do1", "do-tx-01.do2"
FIRE = "fire.smoke_coincidence"


async def coil(site: SimulatedSite, point: str, value: bool, seconds: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while site.read_point(point) is not value:
        assert loop.time() < deadline, f"{point} never became {value}"
        await asyncio.sleep(0.05)


async def test_a_remote_acknowledge_silences_the_siren_once(
        tmp_path: Path, broker: Broker, subscribers: list[Subscriber],
        commander: Commander, keys: Keys) -> None:
    async with SimulatedSite(load_gateway_config(SITE_CONFIG)) as site:
        loaded = load_gateway_config(site.write_config(tmp_path / "sim.yaml"))
        cfg = loaded.config
        prefix = f"roomwarden/{cfg.gateway.site}/{cfg.gateway.id}/"
        uplink_settings = validator(UplinkSettings).validate_python(
            {"broker": "127.0.0.1", "port": broker.port, "reconnect_min": "100ms",
             "reconnect_max": "500ms"})
        config = replaced(cfg, uplink=uplink_settings, panel=replaced(cfg.panel, enabled=False),
                          operators=keys.settings())
        gateway = Gateway(dataclasses.replace(loaded, config=config),
                          state_dir=tmp_path / "state")
        sub = Subscriber(broker.port, [prefix + "cmd/result", prefix + "state"])
        subscribers.append(sub)

        def answers(cid: str) -> list[CommandResult]:
            out = []
            for m in sub.snapshot(lambda m: m.topic == prefix + "cmd/result"):
                r = decode(m.topic, m.payload)
                assert isinstance(r, CommandResult)
                if r.id == cid:
                    out.append(r)
            return out

        def remote_acks() -> list[Any]:
            return [e for e in gateway.core.alarms.events_since(0)
                    if e.rule == FIRE and e.actor == "Zhang Wei (NOC)"]

        task = asyncio.create_task(gateway.run())
        try:
            await until(lambda: gateway.uplink is not None and gateway.uplink.status().subscribed,
                        timeout=15, what="uplink connected")
            await coil(site, SIREN, False)
            site.set_signal("smoke-tx-01.alarm", Constant(value=True))
            site.set_signal("smoke-tx-02.alarm", Constant(value=True))
            await coil(site, SIREN, True)
            fire = next(v for v in gateway.core.alarms.active() if v.key.rule == FIRE)
            ref = AlarmRef(rule=fire.key.rule, subject=fire.key.subject)
            gw_id = cfg.gateway.id
            cmd = keys.zhang.sign(gw_id, site=cfg.gateway.site,
                                  id="noc-ack-1", action="acknowledge", alarms=[ref],
                                  note="on the phone with site")
            commander.send(cmd, topic=prefix + "cmd")
            await until(lambda: len(answers("noc-ack-1")) == 1, what="the command result")
            assert answers("noc-ack-1")[0].ok
            await coil(site, SIREN, False)  # acknowledge silences the siren …
            assert site.read_point(STROBE) is True  # … the strobe stays while active
            assert gateway.core.alarms.get(fire.key).acked_by == "Zhang Wei (NOC)"
            assert len(remote_acks()) == 1

            # the same command again: refused as replayed (not "already acknowledged": it
            # is not carried out at all), and not journalled again
            commander.send(cmd, topic=prefix + "cmd")
            await until(lambda: len(answers("noc-ack-1")) == 2, what="the repeated answer")
            assert answers("noc-ack-1")[1].code == "replayed" and len(remote_acks()) == 1

            # an acknowledge that is no longer wanted is not applied
            shelve = keys.zhang.sign(gw_id, site=cfg.gateway.site,
                                     id="noc-shelve-1", action="shelve", alarm=ref,
                                     now_ns=time.time_ns() - 120_000_000_000, lifetime_s=60,
                                     until=time.time_ns() + 3_600_000_000_000, reason="late")
            commander.send(shelve, topic=prefix + "cmd")
            await until(lambda: len(answers("noc-shelve-1")) == 1, what="the refusal")
            refusal = answers("noc-shelve-1")[0]
            assert not refusal.ok and refusal.code == "expired"
            assert gateway.core.alarms.get(fire.key).shelf is None

            # refused by the alarm manager: the reason travels back
            again = keys.zhang.sign(gw_id, site=cfg.gateway.site,
                                    id="noc-ack-2", action="acknowledge", alarms=[ref])
            commander.send(again, topic=prefix + "cmd")
            await until(lambda: len(answers("noc-ack-2")) == 1, what="the second refusal")
            second = answers("noc-ack-2")[0]
            assert not second.ok and second.code == "not_applicable"
            assert second.error is not None and "already acknowledged" in second.error

            # the state carries the devices online of total
            def last_state() -> GatewayState | None:
                found = [decode(m.topic, m.payload) for m in sub.snapshot(
                    lambda m: m.topic == prefix + "state")]
                good = [x for x in found if isinstance(x, GatewayState)
                        and x.status == "online" and x.devices_total]
                return good[-1] if good else None
            await until(lambda: last_state() is not None, what="a state with devices")
            state = last_state()
            assert state is not None and state.devices_total == gateway.device_counts()[1]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_request_state_is_carried_out_even_with_a_reused_id(
        broker: Broker, subscribers: list[Subscriber], commander: Commander,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An ingest that restarts numbers its requests from 1 again: still answered in full
    (with no spacing between requests, to see each one's answer)."""
    monkeypatch.setattr(state_requests, "REQUEST_STATE_SPACING", 0.0)
    sub = Subscriber(broker.port, [PREFIX + "meta", PREFIX + "cmd/result"])
    subscribers.append(sub)
    async with uplink(settings(broker.port), tmp_path / "state") as up:
        await until(lambda: up.status().subscribed, what="connect")
        await until(lambda: len(sub.snapshot(of("meta"))) == 1, what="catalog at connect")
        request = RequestState(id="ingest-1-1", ts=time.time_ns(), actor="ingest",
                               action="request_state")
        commander.send(request)
        await until(lambda: len(sub.snapshot(of("meta"))) == 2, what="catalog again")
        commander.send(request)  # the same id: carried out again
        await until(lambda: len(sub.snapshot(of("meta"))) == 3, what="and again")
        # the results travel apart from the catalogs: wait for both, not for the catalog only
        await until(lambda: len(results_for(sub, "ingest-1-1")) == 2, what="two results")
        assert [r.ok for r in results_for(sub, "ingest-1-1")] == [True, True]
        assert up.status().commands_duplicate == 0


class Flooder:
    """Publishes unsigned request_state commands at QoS 0 as fast as paho takes them."""

    def __init__(self, port: int, name: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"{name}-{os.getpid()}")
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def send(self, count: int, prefix: str) -> None:
        for i in range(count):
            self.client.publish(CMD, encode(RequestState(
                id=f"{prefix}-{i}", ts=time.time_ns(), actor="x", action="request_state")),
                qos=0)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def test_a_flood_of_request_state_is_folded_into_one_republish_per_spacing(
        broker: Broker, subscribers: list[Subscriber], tmp_path: Path) -> None:
    """request_state needs no signature: 2,000 of them in a burst once queued a catalog each
    (the audit's 40,000 held the bus loops back 28 s). Now the first is carried out and
    answered, the rest are folded into one republish at the end of the spacing, and at most
    MAX_INBOUND_PENDING wait for the loop at a time; telemetry goes on meanwhile."""
    sub = Subscriber(broker.port, [PREFIX + "meta", PREFIX + "cmd/result",
                                   PREFIX + "telemetry"])
    subscribers.append(sub)
    flood = Flooder(broker.port, "flood")
    try:
        async with uplink(settings(broker.port), tmp_path / "state") as up:
            await until(lambda: up.status().subscribed, what="connect")
            await until(lambda: len(sub.snapshot(of("meta"))) == 1, what="catalog at connect")
            began = time.monotonic()
            flood.send(2000, "rs")
            up.on_samples(samples(1))
            await until(lambda: len(sub.snapshot(of("meta"))) == 3, timeout=15,
                        what="one republish now and one folded at the end of the spacing")
            assert time.monotonic() - began >= state_requests.REQUEST_STATE_SPACING - 1.0
            await asyncio.sleep(1.0)
            assert len(sub.snapshot(of("meta"))) == 3
            assert len(results(sub)) == 1  # the folded ones have no answer of their own
            received = up.status().commands_received
            assert up.state_requests.coalesced == received - 1 and received <= 2000
            assert sub.snapshot(of("telemetry")), "telemetry went on"
    finally:
        flood.close()


async def test_at_most_max_inbound_pending_messages_wait_for_the_loop(
        broker: Broker, tmp_path: Path) -> None:
    """While the event loop is busy, paho's thread keeps at most MAX_INBOUND_PENDING messages
    for it; the rest of a flood is dropped and counted, not queued without bound."""
    flood = Flooder(broker.port, "flood2")
    try:
        async with uplink(settings(broker.port), tmp_path / "state") as up:
            await until(lambda: up.status().subscribed, what="connect")
            before = up.status().commands_received
            flood.send(1000, "held")
            time.sleep(2.0)  # noqa: ASYNC251 - holding the loop is the point: paho queues
            await asyncio.sleep(0.5)
            received = up.status().commands_received - before
            session = up._session
            assert session is not None
            assert received <= MAX_INBOUND_PENDING
            assert session.inbound_dropped == 1000 - received
    finally:
        flood.close()


JUNK_ACK = json.dumps({"v": 1, "id": "junk", "ts": 1, "action": "acknowledge",
                       "alarms": [{}] * 21_000}, separators=(",", ":")).encode()
"""An acknowledge of 21,000 empty alarm references in 64 KiB, unsigned: the contract refuses
it; checking every reference made 42,000 errors and took ~150 ms of the event loop's time."""


def test_a_command_with_thousands_of_bad_references_is_refused_at_the_first() -> None:
    assert len(JUNK_ACK) <= 64 * 1024
    with pytest.raises(ContractError) as refused:
        decode(CMD, JUNK_ACK)
    assert "alarms.0." in str(refused.value) and " more" not in str(refused.value)


async def test_a_burst_of_costly_junk_commands_never_holds_the_event_loop(
        broker: Broker, tmp_path: Path) -> None:
    """256 junk commands arrive while the loop is busy (the most paho's thread keeps for
    it): they are judged a slice of the loop's time at a time, in its turns, so timers and
    polls keep running between them — they were judged in one turn, holding the loop for
    seconds (the audit: a siren 14 s late behind 250 of them). Every one is judged."""
    flood = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"junk-{os.getpid()}")
    flood.connect("127.0.0.1", broker.port, keepalive=10)
    flood.loop_start()
    gaps: list[tuple[float, float]] = []
    """(when a sleep of 5 ms began, how long it took)"""

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append((last, now - last))
            last = now

    try:
        async with uplink(settings(broker.port), tmp_path / "state") as up:
            await until(lambda: up.status().subscribed, what="connect")
            session = up._session
            assert session is not None
            before = up.status().commands_received
            tick = asyncio.get_running_loop().create_task(ticker())
            await asyncio.sleep(0.05)
            for _ in range(MAX_INBOUND_PENDING):
                flood.publish(CMD, JUNK_ACK, qos=0)
            time.sleep(2.0)  # noqa: ASYNC251 - the loop busy elsewhere: paho's thread queues
            released = time.monotonic()
            await until(lambda: up.status().commands_received - before
                        + session.inbound_dropped == MAX_INBOUND_PENDING, timeout=60,
                        what="every junk command judged")
            tick.cancel()
            judged = up.status().commands_received - before
            assert judged >= MAX_INBOUND_PENDING // 2, judged  # most waited for the loop
            held = max(gap for began, gap in gaps if began >= released)
            assert held < 1.0, f"the loop was held {held:.2f} s by {judged} junk commands"
    finally:
        flood.loop_stop()
        flood.disconnect()
