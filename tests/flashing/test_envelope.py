"""The signed config/set envelope: what is signed, and everything a gateway must refuse —
unsigned, wrongly signed, tampered, misaddressed, oversized and malformed envelopes, plus
hypothesis-generated garbage and every single-field mutation of a valid envelope."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.contract.wire import MAX_CONFIG_BYTES, ConfigSet, ContractError, decode, encode
from gateway.flashing.envelope import (
    CODES,
    SIGNING_PREFIX,
    EnvelopeRejected,
    envelope_digest,
    payload_limit,
    sign_config,
    signing_bytes,
    verify_envelope,
)
from gateway.flashing.keys import TrustedKey, key_id, public_of
from tests.flashing.conftest import GATEWAY, SEED_A

CONFIG = "gateway: {id: gw-bj-yz-01, site: bj-yizhuang-idc}\n# 天河局 3楼\n"
KEY = Ed25519PrivateKey.from_private_bytes(SEED_A)
TRUSTED = [public_of(KEY)]


def signed(config: str = CONFIG, **kw: Any) -> ConfigSet:
    fields: dict[str, Any] = {"gateway": GATEWAY, "version": 7, "author": "li.wei",
                              "private_key": KEY, "request_id": "flash-1", "now_ns": 10**18}
    fields.update(kw)
    return sign_config(config, **fields)


def verify(raw: bytes, trusted: list[TrustedKey] | None = None,
           max_bytes: int = MAX_CONFIG_BYTES) -> ConfigSet:
    return verify_envelope(raw, gateway_id=GATEWAY,
                           trusted=TRUSTED if trusted is None else trusted,
                           max_bytes=max_bytes)


def code_of(raw: bytes, **kw: Any) -> str:
    with pytest.raises(EnvelopeRejected) as info:
        verify(raw, **kw)
    assert info.value.code in CODES
    assert info.value.message
    return info.value.code


def reencode(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


def test_a_signed_envelope_verifies_and_decodes_on_the_contract() -> None:
    env = signed(force=True)
    raw = encode(env)
    assert verify(raw) == env
    topic = f"roomwarden/bj-yizhuang-idc/{GATEWAY}/config/set"
    assert decode(topic, raw) == env
    assert env.key_id == key_id(KEY.public_key())
    assert env.sha256 == hashlib.sha256(CONFIG.encode()).hexdigest()
    # whitespace and key order on the wire do not matter: the signature is over the model
    data = json.loads(raw)
    shuffled = json.dumps(dict(reversed(list(data.items()))), indent=3).encode()
    assert verify(shuffled) == env


def test_signing_bytes_are_the_documented_canonical_form() -> None:
    env = signed()
    fields = {k: v for k, v in json.loads(encode(env)).items() if k != "signature"}
    fields.setdefault("force", False)
    expected = SIGNING_PREFIX + json.dumps(fields, sort_keys=True, separators=(",", ":"),
                                           ensure_ascii=False).encode("utf-8")
    assert signing_bytes(env) == expected
    assert expected.startswith(b'roomwarden/config-set/v1\n{"author":"li.wei","config":')
    assert "天河局".encode() in expected  # not \u-escaped
    KEY.public_key().verify(base64.b64decode(env.signature or ""), expected)
    assert envelope_digest(env) == hashlib.sha256(expected).hexdigest()


def test_unsigned() -> None:
    data = json.loads(encode(signed()))
    del data["signature"]
    assert code_of(reencode(data)) == "unsigned"
    del data["key_id"]
    assert code_of(reencode(data)) == "unsigned"


def test_untrusted_key(other_signer: Ed25519PrivateKey) -> None:
    raw = encode(signed(private_key=other_signer))
    assert code_of(raw) == "untrusted_key"
    assert code_of(encode(signed()), trusted=[]) == "untrusted_key"
    # trusting the other key as well makes it acceptable
    assert verify(raw, trusted=[*TRUSTED, public_of(other_signer)]).version == 7


def test_signed_by_another_key_claiming_a_trusted_key_id(
        other_signer: Ed25519PrivateKey) -> None:
    env = signed()
    forged = base64.b64encode(other_signer.sign(signing_bytes(env))).decode()
    data = {**json.loads(encode(env)), "signature": forged}
    assert code_of(reencode(data)) == "bad_signature"


@pytest.mark.parametrize(("change", "code"), [
    ({"version": 8}, "bad_signature"),
    ({"force": True}, "bad_signature"),
    ({"author": "mallory"}, "bad_signature"),
    ({"ts": 10**18 + 1}, "bad_signature"),
    ({"id": "flash-2"}, "bad_signature"),
    ({"gateway": "gw-other"}, "wrong_gateway"),
    ({"config": CONFIG + "x"}, "digest_mismatch"),
    ({"sha256": "0" * 64}, "digest_mismatch"),
    ({"signature": "not base64!"}, "bad_signature"),
    ({"signature": base64.b64encode(bytes(64)).decode()}, "bad_signature"),
    ({"signature": base64.b64encode(bytes(63)).decode()}, "bad_signature"),
    ({"key_id": "0123456789abcdef"}, "untrusted_key"),
    ({"key_id": "XYZ"}, "malformed"),
    ({"version": 0}, "malformed"),
    ({"version": "8"}, "malformed"),
    ({"version": 7.0}, "malformed"),
    ({"v": 2}, "malformed"),
    ({"v": True}, "malformed"),
    ({"extra": 1}, "malformed"),
    ({"author": ""}, "malformed"),
])
def test_tampering_is_refused_with_the_right_code(change: dict[str, Any], code: str) -> None:
    data = {**json.loads(encode(signed())), **change}
    assert code_of(reencode(data)) == code


def test_tampering_with_a_consistent_config_and_digest_breaks_the_signature() -> None:
    other = CONFIG.replace("bj-yizhuang-idc", "evil-site")
    data = {**json.loads(encode(signed())), "config": other,
            "sha256": hashlib.sha256(other.encode()).hexdigest()}
    assert code_of(reencode(data)) == "bad_signature"


def test_malformed_messages_say_which_field() -> None:
    data = json.loads(encode(signed()))
    data["ts"] = "yesterday"
    with pytest.raises(EnvelopeRejected, match="ts"):
        verify(reencode(data))
    for raw, reason in [(b"\xff\xfe", "UTF-8"), (b"{", "not JSON"), (b"[]", "object"),
                        (b'{"a": 1, "a": 2}', "twice"), (b'{"ts": NaN}', "not JSON")]:
        with pytest.raises(EnvelopeRejected, match=reason) as info:
            verify(raw)
        assert info.value.code == "malformed"


def test_oversized() -> None:
    big = "# " + "x" * 5000 + "\n"
    raw = encode(signed(big))
    assert verify(raw, max_bytes=6000).config == big
    assert code_of(raw, max_bytes=4096) == "oversized"  # the config is over the limit
    assert code_of(b" " * (payload_limit(4096) + 1), max_bytes=4096) == "oversized"
    # the contract caps a config at MAX_CONFIG_BYTES whatever the gateway allows
    with pytest.raises(ContractError, match="config"):
        signed("#" * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(ContractError, match="bytes in UTF-8"):
        signed("界" * (MAX_CONFIG_BYTES // 3 + 1))


def test_a_nesting_bomb_is_malformed_not_a_crash() -> None:
    assert code_of(b"[" * 200_000 + b"]" * 200_000) == "malformed"
    assert code_of(b'{"config": "\\ud800"}') == "malformed"


# ---------------------------------------------------------------- properties

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids,
                                                              max_size=3),
    max_leaves=10)

envelopes = st.builds(
    lambda config, version, author, force, rid: signed(
        config, version=version, author=author, force=force, request_id=rid),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=300),
    st.integers(min_value=1, max_value=2**63 - 1),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=64),
    st.booleans(),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}", fullmatch=True))


@given(st.binary(max_size=2000))
@settings(max_examples=400)
def test_arbitrary_bytes_are_refused_with_an_envelope_rejection(raw: bytes) -> None:
    code_of(raw)


@pytest.mark.slow
@given(st.dictionaries(st.sampled_from([*ConfigSet.model_fields, "x"]), json_values,
                       max_size=12))
@settings(max_examples=400)
def test_arbitrary_json_objects_are_refused(data: dict[str, Any]) -> None:
    code_of(json.dumps(data).encode())


def _same_json(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@st.composite
def mutations(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """(original, mutated): one field of a valid signed envelope changed, removed or added."""
    env = draw(envelopes)
    original = json.loads(encode(env))
    data = dict(original)
    field = draw(st.sampled_from([*sorted(data), "force", "__new__"]))
    kind = draw(st.sampled_from(["replace", "tweak", "delete"]))
    if field == "__new__":
        data[draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in data))] = draw(
            json_values)
    elif kind == "delete":
        # removing a field that holds its default value re-encodes the same signed content;
        # that is not a change
        assume(field in data and not (field == "v" or (field == "force" and not env.force)))
        del data[field]
    elif kind == "tweak" and field in data:
        value = data[field]
        if isinstance(value, bool):
            data[field] = not value
        elif isinstance(value, int):
            data[field] = value + draw(st.sampled_from([-1, 1, 2**63]))
        else:
            assert isinstance(value, str)
            index = draw(st.integers(0, len(value) - 1))
            char = draw(st.characters(codec="utf-8"))
            data[field] = value[:index] + char + value[index + 1:]
    else:
        data[field] = draw(json_values)
    assume(not _same_json(data, original))
    return original, data


@pytest.mark.slow
@given(mutations())
@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow,
                                                   HealthCheck.filter_too_much])
def test_every_single_field_mutation_of_a_signed_envelope_is_refused(
        pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    original, mutated = pair
    assert verify(reencode(original)).model_dump(mode="json", exclude_none=True) == original
    code = code_of(reencode(mutated))
    changed = {k for k in {*original, *mutated}
               if (k in original) != (k in mutated)  # an added key holding null counts too
               or not _same_json(original.get(k), mutated.get(k))}
    assert len(changed) == 1
    if changed == {"gateway"} and isinstance(mutated.get("gateway"), str):
        assert code in ("wrong_gateway", "malformed")
    if changed <= {"id", "ts", "author", "version"} and code != "malformed":
        assert code == "bad_signature"


@pytest.mark.slow
@given(envelopes)
@settings(max_examples=100)
def test_sign_verify_round_trip(env: ConfigSet) -> None:
    assert verify(encode(env)) == env
