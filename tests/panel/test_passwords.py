from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.panel.passwords import MalformedHash, hash_password, parse_hash, verify_password

FAST = {"n": 2**4, "r": 1, "p": 1}
GOOD = hash_password("s3cret", **FAST)


def test_round_trip_with_default_parameters() -> None:
    encoded = hash_password("hunter2 — ünïcode")
    assert encoded.startswith("scrypt$16384$8$1$")
    assert verify_password("hunter2 — ünïcode", encoded)
    assert not verify_password("hunter2", encoded)


def test_salted() -> None:
    assert hash_password("same", **FAST) != hash_password("same", **FAST)


def test_wrong_password() -> None:
    assert not verify_password("s3cret ", GOOD)
    assert not verify_password("", GOOD)


def test_lone_surrogate_is_just_a_wrong_password() -> None:
    assert not verify_password("\ud800", GOOD)


def test_empty_password_is_not_hashed() -> None:
    with pytest.raises(ValueError, match="empty"):
        hash_password("")


@pytest.mark.parametrize(
    ("encoded", "reason"),
    [
        ("", "must look like"),
        ("hunter2", "must look like"),
        ("bcrypt$16384$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==", "must look like"),
        ("scrypt$16384$8$1$AAAA", "must look like"),
        ("scrypt$x$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==", "n must be a decimal"),
        ("scrypt$1000$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==", "power of two"),
        ("scrypt$1048576$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==", "power of two"),
        ("scrypt$16384$0$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==", "r must be"),
        ("scrypt$16384$8$9$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==", "p must be"),
        ("scrypt$65536$16$4$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==", "too much memory"),
        ("scrypt$16384$8$1$not base64!$AAAAAAAAAAAAAAAAAAAAAA==", "salt is not valid base64"),
        ("scrypt$16384$8$1$AAAA$AAAAAAAAAAAAAAAAAAAAAA==", "salt must be 8..64 bytes"),
        ("scrypt$16384$8$1$AAAAAAAAAAA=$AAAA", "hash must be 16..64 bytes"),
        ("scrypt$١٦$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==", "n must be a decimal"),
    ],
)
def test_malformed_hash_is_a_clear_error(encoded: str, reason: str) -> None:
    with pytest.raises(MalformedHash, match=reason):
        verify_password("anything", encoded)
    with pytest.raises(ValueError):
        parse_hash(encoded)


def test_parse_and_encode_round_trip() -> None:
    assert parse_hash(GOOD).encode() == GOOD


@given(st.text(max_size=200), st.text(max_size=50))
@settings(max_examples=300, deadline=None)
def test_arbitrary_strings_never_verify(encoded: str, plain: str) -> None:
    try:
        ok = verify_password(plain, encoded)
    except MalformedHash as exc:
        assert str(exc)
    else:
        assert not ok


_b64 = st.binary(min_size=0, max_size=70).map(lambda b: base64.b64encode(b).decode())
_num = st.one_of(st.integers(-5, 2**21).map(str), st.text(max_size=6))


@given(_num, _num, _num, _b64, _b64, st.text(max_size=20))
@settings(max_examples=300, deadline=None)
def test_near_miss_hashes_never_verify(
    n: str, r: str, p: str, salt: str, digest: str, plain: str
) -> None:
    encoded = f"scrypt${n}${r}${p}${salt}${digest}"
    try:
        assert not verify_password(plain, encoded)
    except MalformedHash as exc:
        assert str(exc)


@given(st.text(max_size=40))
@settings(max_examples=50, deadline=None)
def test_only_the_right_password_verifies(plain: str) -> None:
    assert verify_password(plain, GOOD) == (plain == "s3cret")
