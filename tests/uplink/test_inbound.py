"""The ingest's acknowledgement read without pydantic (gateway.contract.inbound, issue 15): for
any `ack` payload — the ingest's own, the same JSON written otherwise (key order, white space,
`v` left out or written `true`/`1.0`, keys repeated), and near misses of it (a field missing,
unknown or repeated; ints as bools, floats, strings, NaN, infinities, out of range or beyond
jiter's digits; nesting past jiter's limit; lone surrogates; the topic's site or gateway not
the payload's; bytes that are not UTF-8; truncated, trailing or oversized payloads) —
`read_ack` refuses (ContractError) exactly when `decode` refuses, and what it accepts it reads
as the values `DeliveryAck` holds. A bad acknowledgement costs the gateway nothing but a log
line."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.clock import SystemClock
from gateway.contract import wire as c
from gateway.contract.inbound import ACK_FIELDS
from gateway.ops.connections import RateLimitFilter
from gateway.uplink.publisher import Uplink
from tests.uplink.strategies import delivery_ack, ids
from tests.uplink.test_publisher import GW, POINTS, SITE
from tests.uplink.test_publisher import settings as uplink_settings

TOPIC_SITE, TOPIC_GATEWAY = "site-1", "gw.1"
ACK_TOPIC = str(c.Topic(TOPIC_SITE, TOPIC_GATEWAY, c.Channel.ACK))

Pairs = list[tuple[str, str]]
"""A JSON object as written: (key, the value's JSON text), repeats allowed."""

good_ints = st.sampled_from(["0", "1", "-0", str(2**63 - 1), "42"]) | st.integers(
    0, 2**63 - 1).map(str)
bad_ints = st.sampled_from([
    "-1", str(2**63), str(2**64), "9" * 4300, "9" * 4301, "-" + "9" * 4301, "1.0", "1e0", "1E2",
    "0.5", "-0.0", "true", "false", "null", '"1"', "[]", "{}", "[1]", "NaN", "Infinity",
    "-Infinity", "1e400", "-1e400", "[" * 201 + "]" * 201, "[" * 199 + "]" * 199])
v_tokens = st.sampled_from(["1", "true", "1.0", "1e0", "10e-1", "1.0000000000000001", "0",
                            "false", "2", "-1", '"1"', "null", "1.5", "-0.0", "[1]", "NaN",
                            "Infinity", str(2**64 + 1)])
id_tokens = st.sampled_from([json.dumps(TOPIC_SITE), json.dumps(TOPIC_GATEWAY), '"other"',
                             '"\\u0073ite-1"', '"site-1 "', '""', '"-x"', '"a b"', "1",
                             "null", "true", '"\\ud800"', '"\\ud83d\\ude00"', '"é"',
                             json.dumps("a" * 65), json.dumps("a" * 64), '"site-1\\n"'])
jiter_edges = st.sampled_from([  # what pydantic-core's parser refuses and json.loads takes
    "1" * 4300 + ".5", "1" * 4301 + ".5", "-" + "9" * 4301 + "e-4301", "0." + "1" * 5000,
    "[" * 199 + "]" * 199, "[" * 200 + "]" * 200, "[" * 201 + "]" * 201,
    '{"a":' * 199 + "1" + "}" * 199, '{"a":' * 200 + "1" + "}" * 200,
    '{"a":' + "[" * 199 + "]" * 199 + ',"a":1}', '{"a":' + "[" * 200 + "]" * 200 + ',"a":1}',
    '"\\ud800"', '"\\udfff"', '"\\ud83dx"', '"\\ude00\\ud83d"', '"\\ud83d\\ude00"',
    '{"\\ud800":1}', '{"a":"\\udc00","a":1}', '["\\ud83d\\ude00","\\ud83dx"]',
    "[" * 1200 + "]" * 1200])
any_tokens = good_ints | bad_ints | v_tokens | id_tokens | jiter_edges | st.sampled_from(
    ['"x"', "1.5e3", "[1, [2, {}]]", '{"a": 1}', "-", "01", ".5", "1.", "tru", '"\\x"'])
keys = st.sampled_from([*ACK_FIELDS, "x", "V", "site ", "", "upTo", "\\u0076"])


def written(pairs: Pairs, space: str = "") -> bytes:
    """`pairs` as a JSON object; a key with a backslash is an escape, written as it is."""
    inner = f",{space}".join(f"{_key(k)}:{space}{v}" for k, v in pairs)
    return f"{{{inner}}}".encode()


def _key(key: str) -> str:
    return f'"{key}"' if "\\" in key else json.dumps(key)


def ack_pairs(ack: c.DeliveryAck) -> Pairs:
    return [(k, json.dumps(v)) for k, v in ack.model_dump().items()]


acks = delivery_ack.map(lambda a: a.model_copy(
    update={"site": TOPIC_SITE, "gateway": TOPIC_GATEWAY})) | st.builds(
    c.DeliveryAck, site=st.just(TOPIC_SITE), gateway=st.just(TOPIC_GATEWAY),
    ts=st.sampled_from([0, 2**63 - 1]), stream=st.sampled_from([1, 2**63 - 1]),
    upto=st.just(0), highest=st.sampled_from([0, 2**63 - 1]))


@st.composite
def rewritten(draw: st.DrawFn) -> bytes:
    """The same acknowledgement written otherwise: order, spaces, `v`, repeated keys."""
    pairs = ack_pairs(draw(acks))
    if draw(st.booleans()):
        pairs = [(k, draw(v_tokens) if k == "v" else t) for k, t in pairs]
    if draw(st.booleans()):
        pairs = [p for p in pairs if p[0] != "v"]
    pairs = draw(st.permutations(pairs))
    for _ in range(draw(st.integers(0, 2))):  # an earlier value, overwritten by the last
        key = draw(st.sampled_from([k for k, _ in pairs]))
        pairs.insert(0, (key, draw(any_tokens)))
    space = draw(st.sampled_from(["", " ", "\n\t", "\r\n  "]))
    return draw(st.sampled_from(["", " ", "\n"])).encode() + written(pairs, space) + \
        draw(st.sampled_from(["", " ", "\t\r\n"])).encode()


@st.composite
def near_misses(draw: st.DrawFn) -> bytes:
    """An acknowledgement with one or two things wrong (or not quite: some are still fine)."""
    pairs = ack_pairs(draw(acks))
    for _ in range(draw(st.integers(1, 2))):
        how = draw(st.sampled_from(["value", "drop", "add", "repeat", "id", "order"]))
        if how == "value":
            i = draw(st.integers(0, len(pairs) - 1))
            pairs[i] = (pairs[i][0], draw(any_tokens))
        elif how == "drop":
            del pairs[draw(st.integers(0, len(pairs) - 1))]
        elif how in ("add", "repeat"):
            pairs.insert(draw(st.integers(0, len(pairs))), (draw(keys), draw(any_tokens)))
        elif how == "id":
            key = draw(st.sampled_from(["site", "gateway"]))
            pairs.append((key, draw(id_tokens)))
        else:  # upto above highest, or equal
            n = draw(good_ints)
            pairs += [("upto", n), ("highest", draw(st.sampled_from([n, "0", "1"])))]
    data = written(pairs, draw(st.sampled_from(["", " "])))
    cut = draw(st.sampled_from(["none", "none", "truncate", "trail", "bytes", "bom", "list"]))
    if cut == "truncate":
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif cut == "trail":
        data += draw(st.sampled_from([b"{}", b"x", b"\x0c", b"\x00", b",", b"\xa0"]))
    elif cut == "bytes":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80",
                                                 b"\xc3\xa9", b"\xe2\x80\xa8"])) + data[at:]
    elif cut == "bom":
        data = b"\xef\xbb\xbf" + data
    elif cut == "list":
        data = b"[" + data + b"]"
    return data


def outcome(read: Any, payload: bytes, topic: str = ACK_TOPIC) -> dict[str, Any] | None:
    """The fields read, or None if the contract refused (ContractError, nothing else)."""
    try:
        got = read(topic, payload)
    except c.ContractError:
        return None
    if isinstance(got, c.Watermark):
        return dataclasses.asdict(got)
    assert isinstance(got, c.DeliveryAck)
    return got.model_dump(exclude={"v"})


def assert_agree(payload: bytes, topic: str = ACK_TOPIC) -> dict[str, Any] | None:
    ours = outcome(c.read_ack, payload, topic)
    assert ours == outcome(c.decode, payload, topic), payload[:300]
    return ours


@settings(max_examples=500)
@given(ack=acks)
def test_the_ingests_acknowledgement_reads_as_the_model(ack: c.DeliveryAck) -> None:
    got = c.read_ack(ACK_TOPIC, c.encode(ack))
    assert dataclasses.asdict(got) == ack.model_dump(exclude={"v"})


@settings(max_examples=500)
@given(payload=rewritten())
def test_the_same_json_written_otherwise_agrees_with_decode(payload: bytes) -> None:
    assert_agree(payload)


@settings(max_examples=1500)
@given(payload=near_misses())
def test_near_misses_are_refused_exactly_when_decode_refuses_them(payload: bytes) -> None:
    assert_agree(payload)


@settings(max_examples=300)
@given(payload=st.binary(max_size=80) | st.text(max_size=80).map(str.encode))
def test_any_bytes_agree(payload: bytes) -> None:
    assert assert_agree(payload) is None


@settings(max_examples=200)
@given(ack=acks, site=id_tokens.map(json.loads) | ids,
       channel=st.sampled_from([c.Channel.ACK, c.Channel.ACK, c.Channel.CMD]))
def test_the_topics_site_and_gateway_must_be_the_payloads(
        ack: c.DeliveryAck, site: Any, channel: c.Channel) -> None:
    payload = c.encode(ack)
    for topic in (f"roomwarden/{site}/{TOPIC_GATEWAY}/{channel.value}",
                  f"roomwarden/{TOPIC_SITE}/{site}/{channel.value}"):
        if channel is c.Channel.ACK:
            assert_agree(payload, topic)
        else:  # another channel: decode reads another message; read_ack refuses
            with pytest.raises(c.ContractError):
                c.read_ack(topic, payload)
    with pytest.raises(c.ContractError, match="cmd is not the ack channel"):
        c.read_ack(ACK_TOPIC.replace("/ack", "/cmd"), payload)


def test_a_payload_over_the_limit_is_refused_by_both() -> None:
    payload = c.encode(next_ack := c.DeliveryAck(site=TOPIC_SITE, gateway=TOPIC_GATEWAY, ts=1,
                                                 stream=1, upto=1, highest=2))
    fits = payload[:-1] + b" " * (c.MAX_PAYLOAD_BYTES - len(payload)) + b"}"
    assert len(fits) == c.MAX_PAYLOAD_BYTES
    assert assert_agree(fits) == next_ack.model_dump(exclude={"v"})
    assert assert_agree(fits + b" ") is None


def test_refusals_say_why() -> None:
    good: dict[str, object] = {"site": TOPIC_SITE, "gateway": TOPIC_GATEWAY, "ts": 1,
                               "stream": 5, "upto": 3, "highest": 4}
    changes: list[tuple[dict[str, object], str]] = [
        ({"ts": 1.0}, "ts: 1.0 is not an integer"),
        ({"upto": True}, "upto: True is not an integer"),
        ({"stream": 0}, r"stream: 0 is not an integer in \[1,"),
        ({"extra": 1}, "unknown field 'extra'"),
        ({"highest": 2}, "highest must not be below upto"),
        ({"gateway": "gw-2"}, "payload names site-1/gw-2 but the topic"),
        ({"v": 2}, "v: 2 is not 1")]
    for change, reason in changes:
        with pytest.raises(c.ContractError, match=reason):
            c.read_ack(ACK_TOPIC, json.dumps({**good, **change}).encode())
    with pytest.raises(c.ContractError, match="missing"):
        c.read_ack(ACK_TOPIC, json.dumps({k: v for k, v in good.items() if k != "ts"}).encode())
    with pytest.raises(c.ContractError, match="not UTF-8"):
        c.read_ack(ACK_TOPIC, b'{"site": "\xff"}')
    with pytest.raises(c.ContractError, match="Invalid JSON"):
        c.read_ack(ACK_TOPIC, b'{"ts": NaN')


def test_the_watermark_has_the_models_fields_in_their_order() -> None:
    assert list(ACK_FIELDS) == list(c.DeliveryAck.model_fields)
    assert [f.name for f in dataclasses.fields(c.Watermark)] == list(ACK_FIELDS[1:])


def test_a_bad_acknowledgement_is_logged_and_ignored(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The redelivery's path, on a real uplink (its outbox on sqlite, not connected): what
    `read_ack` refuses is a warning naming why, nothing more; a good one goes on as before."""
    uplink = Uplink(uplink_settings(1, delivery="ingest"), SITE, GW, tmp_path, SystemClock(),
                    POINTS)
    try:
        caplog.set_level(logging.WARNING, "roomwarden.uplink")
        stream = uplink.outbox.stream
        good = {"site": SITE, "gateway": GW, "ts": 1, "stream": stream, "upto": 0,
                "highest": 0}
        for bad in ({**good, "upto": float("nan")}, {**good, "site": "other"},
                    {**good, "highest": True}):
            uplink.redelivery.on_ack(json.dumps(bad).encode())
        uplink.redelivery.on_ack(b"\xff")
        warned = [r.getMessage() for r in caplog.records]
        assert len(warned) == 4 and all("event=uplink_bad_ack" in w for w in warned)
        assert "upto: nan is not an integer" in warned[0] and "the topic" in warned[1]
        assert "not UTF-8" in warned[3]
        caplog.clear()
        limiter = next(f for f in logging.getLogger("roomwarden.uplink").filters
                       if isinstance(f, RateLimitFilter)
                       and f.prefix == "event=uplink_ack_beyond_issued")
        seen = limiter.seen  # (a line a minute per process: another test may have had it)
        uplink.redelivery.on_ack(json.dumps({**good, "stream": stream % (2**62) + 1}
                                            ).encode())  # another stream's: ignored
        uplink.redelivery.on_ack(json.dumps(good).encode())  # nothing issued, nothing covered
        uplink.redelivery.on_ack(json.dumps({**good, "upto": 1, "highest": 1}).encode())
        assert uplink.redelivery.refused_acks == 1  # beyond what it issued: refused
        assert limiter.seen == seen + 1  # one warning, whether the minute's limit let it out
        assert {r.getMessage().split()[0] for r in caplog.records} <= {
            "event=uplink_ack_beyond_issued"}
        assert uplink.status().covered == 0
    finally:
        uplink.committer.close()
