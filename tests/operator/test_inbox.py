"""The command inbox without a broker: every refusal code, replay memory across a restart, the
bounds, and hypothesis-made payloads that never make it raise."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.clock import ManualClock
from gateway.config.section import validator
from gateway.contract.wire import (
    MAX_COMMAND_BYTES,
    MAX_SHELVE_S,
    AlarmCommand,
    AlarmRef,
    RequestState,
    encode,
)
from gateway.operator import refusals as r
from gateway.operator.inbox import UNSIGNED_ACTOR, CommandInbox, Delivery
from gateway.operator.refusals import Refused
from gateway.operator.replay import ReplayMemory
from gateway.operator.settings import OperatorSettings
from tests.fixtures.operators import Keys
from tests.uplink import strategies as s

SITE, GW = "site-1", "gw-1"
REF = AlarmRef(rule="explosion.h2_alarm", subject="h2-1.h2")
SKEW = 300 * 1_000_000_000


class Recorder:
    """Stands in for OperatorCommands.carry_out: records (action, actor); refuses on demand."""

    def __init__(self) -> None:
        self.done: list[tuple[str, str]] = []
        self.refuse: Refused | None = None

    def __call__(self, cmd: AlarmCommand, actor: str) -> int:
        if self.refuse is not None:
            raise self.refuse
        self.done.append((cmd.action, actor))
        return 1


class Bench:
    def __init__(self, tmp_path: Path, keys: Keys, **operators: Any) -> None:
        self.clock = ManualClock(start_ns=1_800_000_000_000_000_000)
        self.path = tmp_path / "operator" / "commands.sqlite"
        self.keys = keys
        self.policy = keys.settings(**operators)
        self.recorder = Recorder()
        self.clock.advance(1.0)
        self.restart()

    def restart(self) -> None:
        self.memory = ReplayMemory(self.path, self.clock, skew_ns=SKEW)
        self.inbox = CommandInbox(SITE, GW, self.clock, carry_out=self.recorder,
                                  policy=lambda: self.policy, memory=self.memory)

    def now(self) -> int:
        return self.clock.now_ns()

    def send(self, cmd: Any, *, retained: bool = False) -> Delivery:
        payload = cmd if isinstance(cmd, bytes) else encode(cmd)
        return self.inbox.receive(payload, retained)


@pytest.fixture
def bench(tmp_path: Path, keys: Keys) -> Bench:
    return Bench(tmp_path, keys)


def ack(bench: Bench, key: Any = None, **over: Any) -> AlarmCommand:
    signer = key or bench.keys.zhang
    over.setdefault("now_ns", bench.now())
    return signer.sign(over.pop("gateway", GW), site=over.pop("site", SITE),
                       root=over.pop("root", "roomwarden"), action="acknowledge",
                       alarms=[REF], **over)


def refused(d: Delivery, code: str) -> str:
    assert d.result is not None and not d.result.ok, d
    assert d.result.code == code, (d.result.code, d.result.error)
    assert d.result.error
    return d.result.error


def test_a_signed_acknowledge_is_carried_out_in_the_key_owners_name(bench: Bench) -> None:
    d = bench.send(ack(bench))
    assert d.outcome == "applied" and d.result is not None and d.result.ok
    assert d.result.actor == "Zhang Wei (NOC)" and d.result.changed == 1
    assert bench.recorder.done == [("acknowledge", "Zhang Wei (NOC)")]
    # the key's comment names its owner when the config gives no name
    d = bench.send(ack(bench, bench.keys.acker))
    assert d.result is not None and d.result.actor == "noc.acker"


def test_the_payload_actor_is_never_journalled(bench: Bench) -> None:
    d = bench.send(ack(bench, actor="someone.else"))
    assert d.result is not None and d.result.ok
    assert bench.recorder.done == [("acknowledge", "Zhang Wei (NOC)")]


def test_every_refusal_has_its_code_and_carries_out_nothing(bench: Bench) -> None:
    keys = bench.keys
    unsigned = ack(bench).model_copy(update={"signature": None, "key_id": None})
    refused(bench.send(unsigned), r.UNSIGNED)
    refused(bench.send(ack(bench).model_copy(update={"signature": None})), r.UNSIGNED)
    refused(bench.send(ack(bench, keys.stranger)), r.UNTRUSTED_KEY)
    good = ack(bench)
    tampered = good.model_copy(update={"alarms": (AlarmRef(rule="fire.smoke",
                                                           subject="smoke-1.alarm"),)})
    refused(bench.send(tampered), r.BAD_SIGNATURE)
    other_key = ack(bench, keys.acker).model_copy(update={"key_id": good.key_id})
    refused(bench.send(other_key), r.BAD_SIGNATURE)
    refused(bench.send(ack(bench, gateway="gw-2")), r.WRONG_GATEWAY)
    shelve = keys.acker.sign(GW, site=SITE, action="shelve", alarm=REF, now_ns=bench.now(),
                             until=bench.now() + 3_600_000_000_000, reason="test")
    assert "may not shelve" in refused(bench.send(shelve), r.NOT_PERMITTED)
    refused(bench.send(ack(bench, now_ns=bench.now() - 200_000_000_000)), r.EXPIRED)
    refused(bench.send(ack(bench, now_ns=bench.now() + 400_000_000_000)), r.NOT_YET_VALID)
    refused(bench.send(ack(bench, lifetime_s=16 * 60)), r.BAD_VALIDITY)
    refused(bench.send(ack(bench, expires=None)), r.BAD_VALIDITY)
    refused(bench.send(ack(bench), retained=True), r.RETAINED)
    assert bench.recorder.done == []
    d = bench.send(b'{"v": 1, "id": "bad-1", "action": "acknowledge"}')
    assert d.outcome == "bad"
    assert "bad command" in refused(d, r.MALFORMED)
    assert bench.send(b"\xff" * (MAX_COMMAND_BYTES + 1)) == Delivery("bad", None)
    assert bench.send(b"[" * 100_000) == Delivery("bad", None)
    assert bench.recorder.done == []


def test_a_command_signed_the_old_way_over_the_gateway_id_only_is_refused(
        bench: Bench) -> None:
    """A command as a signing tool from before site and root were bound made it — no `site`,
    no `root`, signed over the rest — is valid at every site with a gateway of its id: it is
    refused (fail closed), saying to update the signing tool, and nothing is carried out.
    Before, it was carried out. Then the same command bound to another site or topic root,
    even correctly signed, is refused too."""
    import base64

    from gateway.contract.wire import Channel, Topic, decode
    from gateway.operator.signing import SIGNING_PREFIX

    key, now = bench.keys.zhang, bench.now()
    data: dict[str, Any] = {
        "v": 1, "id": "cmd-old-tool", "ts": now, "expires": now + 60_000_000_000,
        "gateway": GW, "key_id": key.public.key_id, "action": "acknowledge",
        "alarms": [{"rule": REF.rule, "subject": REF.subject}]}
    cmd = decode(Topic(SITE, GW, Channel.CMD), json.dumps(data).encode())
    old = cmd.model_dump(mode="json", exclude={"signature", "site", "root"})  # (its fields)
    text = json.dumps(old, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    data["signature"] = base64.b64encode(key.private.sign(SIGNING_PREFIX + text.encode())
                                         ).decode()
    error = refused(bench.send(json.dumps(data).encode()), r.WRONG_GATEWAY)
    assert "update the signing tool" in error, error
    assert bench.recorder.done == []
    for elsewhere in ({"site": "site-2"}, {"root": "acme/rw"}):
        error = refused(bench.send(ack(bench, **elsewhere)), r.WRONG_GATEWAY)
        assert "not" in error and GW in error, error
    assert bench.recorder.done == []
    assert bench.send(ack(bench)).outcome == "applied"  # bound to this site and root


def test_replayed_also_after_a_restart(bench: Bench) -> None:
    cmd = ack(bench)
    assert bench.send(cmd).outcome == "applied"
    d = bench.send(cmd)
    assert d.outcome == "duplicate" and "(ok)" in refused(d, r.REPLAYED)
    bench.memory.close()
    bench.restart()  # a new process: the memory is the file
    bench.clock.advance(30)
    d = bench.send(cmd)
    assert d.outcome == "duplicate"
    refused(d, r.REPLAYED)
    # the same id from another key is another command
    assert bench.send(ack(bench, bench.keys.acker, id=cmd.id)).outcome == "applied"
    assert len(bench.recorder.done) == 2


def test_a_refused_command_cannot_be_replayed_either(bench: Bench) -> None:
    bench.recorder.refuse = Refused(r.NOT_APPLICABLE, "h2-1.h2 is normal")
    cmd = ack(bench)
    assert refused(bench.send(cmd), r.NOT_APPLICABLE) == "h2-1.h2 is normal"
    bench.recorder.refuse = None
    assert "(not_applicable)" in refused(bench.send(cmd), r.REPLAYED)


def test_commands_issued_before_the_memory_began_are_refused(tmp_path: Path,
                                                             keys: Keys) -> None:
    bench = Bench(tmp_path, keys)
    early = ack(bench, now_ns=bench.now() - 5_000_000_000)  # before the memory's horizon
    assert "replay memory began" in refused(bench.send(early), r.REPLAYED)
    # a corrupt memory is set aside; the new one begins now: older commands stay refused
    bench.memory.close()
    bench.path.write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        bench.path.with_name(bench.path.name + suffix).unlink(missing_ok=True)
    issued = ack(bench)
    bench.clock.advance(2)
    bench.restart()
    assert list(bench.path.parent.glob("commands.sqlite.corrupt-*"))
    refused(bench.send(issued), r.REPLAYED)
    assert bench.send(ack(bench)).outcome == "applied"


def test_the_memory_is_bounded_and_forgets_expired_commands(tmp_path: Path,
                                                            keys: Keys) -> None:
    clock = ManualClock(start_ns=1_800_000_000_000_000_000)
    path = tmp_path / "m.sqlite"
    memory = ReplayMemory(path, clock, skew_ns=SKEW, limit=10)
    clock.advance(1)
    for i in range(15):
        memory.record("k", f"id-{i}", clock.now_ns(), clock.now_ns() + 60_000_000_000)
        clock.advance(0.001)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM seen").fetchone() == (10,)
    assert memory.seen("k", "id-14") is not None and memory.seen("k", "id-0") is None
    assert memory.horizon_ns > clock.now_ns() - 1_000_000_000  # past the dropped ones
    clock.advance(60 + 301)
    memory.record("k", "late", clock.now_ns(), clock.now_ns() + 60_000_000_000)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT id FROM seen").fetchall() == [("late",)]


def test_without_trusted_keys_or_memory_everything_is_refused(tmp_path: Path,
                                                              keys: Keys) -> None:
    clock = ManualClock(start_ns=1_800_000_000_000_000_000)
    inbox = CommandInbox(SITE, GW, clock, carry_out=Recorder())
    cmd = keys.zhang.sign(GW, site=SITE, action="acknowledge", alarms=[REF], now_ns=clock.now_ns())
    d = inbox.receive(encode(cmd), False)
    refused(d, r.UNTRUSTED_KEY)
    policy = keys.settings()
    inbox = CommandInbox(SITE, GW, clock, carry_out=Recorder(), policy=lambda: policy)
    refused(inbox.receive(encode(cmd), False), r.UNAVAILABLE)


def test_request_state_needs_no_signature(bench: Bench) -> None:
    d = bench.send(RequestState(id="ingest-1", ts=bench.now(), actor="ingest",
                                action="request_state"))
    assert d.outcome == "applied" and d.republish and d.result is not None and d.result.ok
    assert bench.recorder.done == []


def test_lab_mode_carries_out_unsigned_commands_as_unsigned_remote(tmp_path: Path,
                                                                   keys: Keys) -> None:
    bench = Bench(tmp_path, keys, allow_unsigned=True)
    unsigned = ack(bench, actor="pretends.to.be.zhang").model_copy(
        update={"signature": None, "key_id": None})
    d = bench.send(unsigned)
    assert d.outcome == "applied" and d.result is not None and d.result.actor == UNSIGNED_ACTOR
    assert bench.recorder.done == [("acknowledge", UNSIGNED_ACTOR)]
    refused(bench.send(unsigned), r.REPLAYED)
    # a signature, when there is one, is still checked
    refused(bench.send(ack(bench, bench.keys.stranger)), r.UNTRUSTED_KEY)


def test_operator_settings_are_validated(keys: Keys) -> None:
    settings = validator(OperatorSettings).validate_python
    with pytest.raises(ValueError, match="not a public key line"):
        settings({"keys": [{"key": "ssh-rsa AAAA", "may": ["shelve"]}]})
    line = keys.zhang.public.line().split()[0]  # no comment, no name
    with pytest.raises(ValueError, match="name the key's owner"):
        settings({"keys": [{"key": line, "may": ["acknowledge"]}]})
    with pytest.raises(ValueError, match="already keys"):
        settings({"keys": [
            {"key": keys.zhang.public.line(), "may": ["acknowledge"]},
            {"key": line, "name": "again", "may": ["shelve"]}]})
    with pytest.raises(ValueError, match="may"):
        settings({"keys": [{"key": line, "name": "x", "may": []}]})
    with pytest.raises(ValueError):
        settings({"keys": [{"key": line, "name": "x", "may": ["reboot"]}]})


def test_max_shelve_is_the_panels() -> None:
    from gateway.panel.views import MAX_MINUTES, ShelveCommand
    assert MAX_MINUTES * 60 == MAX_SHELVE_S
    with pytest.raises(ValueError):
        ShelveCommand.model_validate({"alarm": REF.model_dump(), "minutes": MAX_MINUTES + 1,
                                      "reason": "x"})


MUTATED = st.builds(
    lambda key, value, cmd: json.dumps({**json.loads(encode(cmd)), key: value}).encode(),
    st.sampled_from(["id", "ts", "expires", "action", "alarms", "actor", "v", "x", "gateway",
                     "key_id", "signature", "until", "scope"]),
    s.json_values, s.commands)
PAYLOADS = st.one_of(st.binary(max_size=300), s.json_values.map(s.dumps),
                     s.commands.map(encode), MUTATED)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(payload=PAYLOADS, retained=st.booleans())
def test_any_payload_gets_an_answer_or_a_count_never_an_exception(
        bench: Bench, payload: bytes, retained: bool) -> None:
    d = bench.inbox.receive(payload, retained)
    assert d.outcome in ("applied", "refused", "duplicate", "bad")
    if d.result is not None:
        assert d.result.ok == (d.outcome == "applied")
        assert d.result.ok or d.result.code in r.CODES
    # nothing unsigned is ever carried out: hypothesis cannot sign with a trusted key
    assert bench.recorder.done == []


def test_the_contract_document_lists_exactly_the_refusal_codes() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "mqtt-contract.md").read_text()
    table = doc.split("| code | refused because |")[1].split("\n\n")[0]
    listed = re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE)
    assert listed == list(r.CODES)  # the same codes, in the same order


def test_a_flood_of_junk_is_counted_not_logged_line_by_line(
        bench: Bench, caplog: pytest.LogCaptureFixture) -> None:
    from gateway.operator.inbox import LOG_BUDGET, LOG_WINDOW_S

    caplog.set_level("INFO", logger="roomwarden.operator")
    for i in range(500):
        assert bench.send(f'{{"v": 1, "id": "junk-{i}"}}'.encode()).outcome == "bad"
    assert len(caplog.records) == LOG_BUDGET
    bench.clock.advance(LOG_WINDOW_S)
    bench.send(b"junk")
    assert caplog.records[-1].getMessage().endswith(f"suppressed={500 - LOG_BUDGET}")


def test_a_memory_begun_while_the_clock_ran_ahead_begins_again_when_it_is_right(
        bench: Bench) -> None:
    """The clock audit: the replay memory begun with the clock a year ahead (a Pi without an
    RTC) refused every acknowledge — also freshly signed ones — after NTP set it right, until
    real time caught up, and restarts did not help (its horizon is on disk)."""
    year = 365 * 86400.0
    bench.clock.step_wall(year)
    bench.path = bench.path.with_name("fresh.sqlite")
    bench.restart()  # a new memory begins at the clock's time: a year ahead
    assert bench.memory.horizon_ns == bench.now()
    bench.clock.step_wall(-year)  # NTP: right again, while running
    d = bench.send(ack(bench))
    assert d.outcome == "applied", d
    bench.restart()
    assert bench.memory.horizon_ns <= bench.now()
    assert bench.send(ack(bench)).outcome == "applied"


def test_a_refusal_for_time_names_this_gateways_clock(bench: Bench) -> None:
    early = refused(bench.send(ack(bench, now_ns=bench.now() + 2 * SKEW)), r.NOT_YET_VALID)
    assert "this gateway's clock" in early and "sender's clock or this gateway's" in early
    bench.clock.advance(3600)
    late = refused(bench.send(ack(bench, now_ns=bench.now() - 3600 * 10**9)), r.EXPIRED)
    assert "by this gateway's clock" in late


def test_a_command_forgotten_by_a_clock_stepped_forward_is_not_new_after_it_steps_back(
        bench: Bench) -> None:
    """The clock audit: a command C applied; the wall clock stepped forward 880 s (C's id
    forgotten as expired, at the next command's record) and back; C, captured, was carried out
    a second time with 510 s of its lifetime left. Forgetting an id moves the memory's horizon
    past it: C is refused."""
    command = ack(bench, lifetime_s=600.0)
    assert bench.send(command).outcome == "applied"
    assert bench.send(command).outcome == "duplicate"
    bench.clock.advance(60)
    bench.clock.step_wall(880)
    other = ack(bench, key=bench.keys.acker, now_ns=bench.now() - int(880e9), lifetime_s=900.0)
    assert bench.send(other).outcome == "applied"  # (recorded: C forgotten, as expired)
    bench.clock.step_wall(-880)
    bench.clock.advance(30)
    assert command.expires is not None and command.expires > bench.now()  # valid again
    again = bench.send(command)
    assert again.outcome != "applied", again
    assert [who for _, who in bench.recorder.done] == ["Zhang Wei (NOC)", "noc.acker"]


@pytest.mark.parametrize("horizon", ["'abc'", "NULL"])
def test_a_replay_memory_of_a_shape_no_version_wrote_is_set_aside_not_a_failed_start(
        bench: Bench, horizon: str) -> None:
    """A horizon that is not a number (text, NULL) made `ReplayMemory()` raise at start."""
    bench.memory.close()
    with sqlite3.connect(bench.path) as conn:  # (a column of any type: `INTEGER` coerced)
        conn.execute("DROP TABLE meta")
        conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value)")
        conn.execute(f"INSERT INTO meta VALUES ('horizon', {horizon})")
    bench.restart()  # (raised ValueError / TypeError)
    assert list(bench.path.parent.glob("commands.sqlite.corrupt-*"))
    assert bench.send(ack(bench)).outcome == "applied"
