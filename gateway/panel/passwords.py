"""Panel passwords: scrypt hashes from the standard library.

A hash is one line, `scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`, which `roomwarden passwd`
prints for the `panel.users[].password_hash` field of a gateway config. Verification is
constant-time; a malformed hash raises `MalformedHash` (a `ValueError`) naming what is wrong,
a wrong password just returns False."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from gateway.records import dataclass

SCHEME = "scrypt"
DEFAULT_N = 2**14
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32

# Bounds on what a (possibly hand-edited) config may ask for: a hash must not be able to make
# one login attempt eat the board's memory or minutes of CPU.
MAX_N = 2**16
MAX_R = 16
MAX_P = 4
MAX_MEMORY = 128 * 1024 * 1024
"""Upper bound on scrypt's working memory (about 128 * n * r * (p + 1) bytes)."""


class MalformedHash(ValueError):
    """A password hash that is not `scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>` within bounds."""


@dataclass(frozen=True, slots=True)
class ScryptHash:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def encode(self) -> str:
        salt = base64.b64encode(self.salt).decode("ascii")
        digest = base64.b64encode(self.digest).decode("ascii")
        return f"{SCHEME}${self.n}${self.r}${self.p}${salt}${digest}"


def _memory(n: int, r: int, p: int) -> int:
    return 128 * n * r * (p + 1)


def _check_params(n: int, r: int, p: int) -> None:
    if n < 2 or n > MAX_N or n & (n - 1):
        raise MalformedHash(f"scrypt n must be a power of two between 2 and {MAX_N}, not {n}")
    if not 1 <= r <= MAX_R:
        raise MalformedHash(f"scrypt r must be between 1 and {MAX_R}, not {r}")
    if not 1 <= p <= MAX_P:
        raise MalformedHash(f"scrypt p must be between 1 and {MAX_P}, not {p}")
    if _memory(n, r, p) > MAX_MEMORY:
        raise MalformedHash("scrypt parameters need too much memory")


def _int_field(text: str, name: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise MalformedHash(f"scrypt {name} must be a decimal number, not {text[:20]!r}")
    return int(text)


def _b64_field(text: str, name: str, min_len: int, max_len: int) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise MalformedHash(f"password hash {name} is not valid base64") from None
    if not min_len <= len(raw) <= max_len:
        raise MalformedHash(
            f"password hash {name} must be {min_len}..{max_len} bytes, not {len(raw)}"
        )
    return raw


def parse_hash(encoded: str) -> ScryptHash:
    """Parse `scrypt$n$r$p$salt$hash`; raises MalformedHash saying what is wrong."""
    if not isinstance(encoded, str):
        raise MalformedHash("a password hash must be a string")
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise MalformedHash(
            "a password hash must look like scrypt$<n>$<r>$<p>$<salt b64>$<hash b64> "
            "(make one with `roomwarden passwd`)"
        )
    n = _int_field(parts[1], "n")
    r = _int_field(parts[2], "r")
    p = _int_field(parts[3], "p")
    _check_params(n, r, p)
    salt = _b64_field(parts[4], "salt", 8, 64)
    digest = _b64_field(parts[5], "hash", 16, 64)
    return ScryptHash(n=n, r=r, p=p, salt=salt, digest=digest)


def _derive(plain: str, n: int, r: int, p: int, salt: bytes, length: int) -> bytes:
    # surrogatepass: a JSON body may carry a lone surrogate; it must not become an exception.
    secret = plain.encode("utf-8", "surrogatepass")
    return hashlib.scrypt(
        secret, salt=salt, n=n, r=r, p=p, maxmem=_memory(n, r, p) + 1024 * 1024, dklen=length
    )


def hash_password(plain: str, *, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P) -> str:
    """A new salted scrypt hash of `plain` for the config file (what `roomwarden passwd` prints)."""
    if not plain:
        raise ValueError("the password is empty")
    _check_params(n, r, p)
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _derive(plain, n, r, p, salt, HASH_BYTES)
    return ScryptHash(n=n, r=r, p=p, salt=salt, digest=digest).encode()


def verify_password(plain: str, encoded: str | ScryptHash) -> bool:
    """True if `plain` matches the hash (constant-time compare). Raises MalformedHash only for
    a malformed hash, never for a wrong password. CPU-heavy (tens of ms on a Pi): run it off
    the event loop."""
    parsed = encoded if isinstance(encoded, ScryptHash) else parse_hash(encoded)
    candidate = _derive(plain, parsed.n, parsed.r, parsed.p, parsed.salt, len(parsed.digest))
    return hmac.compare_digest(candidate, parsed.digest)
