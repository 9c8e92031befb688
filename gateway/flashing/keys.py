"""Ed25519 signing keys for config flashing.

`roomwarden keys new NAME` writes two files:

- `NAME.key`: the private key, PEM (PKCS#8), mode 0600, optionally encrypted with a passphrase;
- `NAME.pub`: one line `ed25519:<base64 of the raw 32-byte public key> NAME`, like an ssh key
  line, to paste into a gateway config's `flashing.trusted_keys`.

A key is named on the wire by its `key_id`: the first 16 hex digits of SHA-256 of the raw
32-byte public key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.records import dataclass
from gateway.storage import private_dir

if TYPE_CHECKING:  # cryptography (~7 MiB) is imported by the functions that use it
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

PUBLIC_PREFIX = "ed25519:"
KEY_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
"""A key's name: its files' stem and the comment of its public line."""
_LINE_RE = re.compile(r"ed25519:([A-Za-z0-9+/=]+)(?:[ \t]+(\S.*?))?")
MAX_KEY_FILE_BYTES = 64 * 1024


class KeyFileError(ValueError):
    """A key file or public key line that cannot be used; the message says why."""


@dataclass(frozen=True)
class TrustedKey:
    """A public key a gateway trusts (one `flashing.trusted_keys` line)."""

    raw: bytes
    """The 32-byte raw Ed25519 public key."""
    name: str | None = None
    """The comment after the key (who holds the private half)."""

    @property
    def key_id(self) -> str:
        return key_id(self.raw)

    @property
    def public_key(self) -> Ed25519PublicKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        return Ed25519PublicKey.from_public_bytes(self.raw)

    def line(self) -> str:
        return public_key_line(self.raw, self.name)


def _raw_public(public: Ed25519PublicKey | TrustedKey | bytes) -> bytes:
    if isinstance(public, TrustedKey):
        return public.raw
    if isinstance(public, bytes):
        if len(public) != 32:
            raise KeyFileError(f"an Ed25519 public key is 32 bytes, not {len(public)}")
        return public
    from cryptography.hazmat.primitives import serialization

    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: Ed25519PublicKey | TrustedKey | bytes) -> str:
    """The short fingerprint of a public key: 16 hex digits of SHA-256 of its raw bytes."""
    return hashlib.sha256(_raw_public(public)).hexdigest()[:16]


def public_key_line(public: Ed25519PublicKey | TrustedKey | bytes, name: str | None) -> str:
    """`ed25519:<base64 raw key> NAME` (no name: just the key)."""
    text = PUBLIC_PREFIX + base64.b64encode(_raw_public(public)).decode("ascii")
    return f"{text} {name}" if name else text


def parse_public_key_line(line: str) -> TrustedKey:
    """A `TrustedKey` from a line written by `roomwarden keys new`; KeyFileError if it is not
    one (the message says what is wrong)."""
    if not isinstance(line, str):
        raise KeyFileError("a public key line is text: ed25519:<base64> NAME")
    match = _LINE_RE.fullmatch(line.strip())
    if match is None:
        shown = line.strip()[:40]
        raise KeyFileError(f"{shown!r} is not a public key line; expected "
                           "'ed25519:<base64 of 32 bytes> NAME' as written by "
                           "`roomwarden keys new`")
    try:
        raw = base64.b64decode(match.group(1), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError("the public key is not valid base64") from None
    if len(raw) != 32:
        raise KeyFileError(f"the public key decodes to {len(raw)} bytes; an Ed25519 key "
                           "is 32")
    # Length is all there is to check here: cryptography's `from_public_bytes` accepts any
    # 32 bytes (the point is checked when a signature is verified), so a gateway parsing its
    # `flashing.trusted_keys` need not import it (~7 MiB) before a signed envelope arrives.
    return TrustedKey(raw=raw, name=match.group(2))


parse_public_key = parse_public_key_line
"""Alias of parse_public_key_line."""


def check_key_name(name: str) -> str:
    if KEY_NAME_RE.fullmatch(name) is None:
        raise KeyFileError(f"key name {name!r} must be 1-64 characters of letters, digits and "
                           "_ . @ - (starting with a letter or digit)")
    return name


def new_key_pair(directory: Path, name: str, *,
                 passphrase: bytes | None = None) -> tuple[Path, Path]:
    """Write a new key pair `directory/NAME.key` (PKCS#8 PEM, mode 0600; encrypted if a
    passphrase is given) and `directory/NAME.pub` (the public key line). Never overwrites:
    KeyFileError if either file exists. Returns (private_path, public_path)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    check_key_name(name)
    private_dir(directory)  # 0700, and so are any parents it makes, whatever the umask
    private_path = directory / f"{name}.key"
    public_path = directory / f"{name}.pub"
    for path in (private_path, public_path):
        if path.exists() or path.is_symlink():
            raise KeyFileError(f"{path} already exists; not overwriting a key")
    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase
        else serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            encryption)
    line = public_key_line(key.public_key(), name) + "\n"
    _write_new(private_path, pem, 0o600)
    try:
        _write_new(public_path, line.encode("ascii"), 0o644)
    except BaseException:
        with contextlib.suppress(OSError):
            private_path.unlink()
        raise
    return private_path, public_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; not overwriting a key") from None
    except OSError as exc:
        raise KeyFileError(f"cannot create {path}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; never widened beyond `mode`
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_KEY_FILE_BYTES:
            raise KeyFileError(f"{path} is {size} bytes; not a key file")
        return path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror or exc}") from None


def load_private_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """The Ed25519 private key in a PEM file; KeyFileError (with the reason) if the file is
    missing, readable by others, encrypted without a passphrase given, or not an Ed25519
    key."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = _read(path)
    with contextlib.suppress(OSError):
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise KeyFileError(f"{path} is readable by others (mode {mode:04o}); "
                               f"chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError as exc:
        if passphrase:
            raise KeyFileError(f"{path} is not encrypted; give no passphrase") from None
        raise KeyFileError(f"{path} is encrypted; a passphrase is needed ({exc})") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        if passphrase and "password" in str(exc).lower():
            raise KeyFileError(f"{path}: wrong passphrase") from None
        raise KeyFileError(f"{path} is not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def load_public_key(path: Path) -> TrustedKey:
    """The public key line in a `.pub` file; KeyFileError if it is not one."""
    try:
        text = _read(path).decode("utf-8")
    except UnicodeDecodeError:
        raise KeyFileError(f"{path} is not a public key line (not UTF-8 text)") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if len(lines) != 1:
        raise KeyFileError(f"{path} should hold one public key line, found {len(lines)}")
    try:
        return parse_public_key_line(lines[0])
    except KeyFileError as exc:
        raise KeyFileError(f"{path}: {exc}") from None


def public_of(private: Ed25519PrivateKey) -> TrustedKey:
    return TrustedKey(raw=_raw_public(private.public_key()))
