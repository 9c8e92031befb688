"""Ed25519 key files: written safely, read back, and refused with a clear reason when wrong."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.flashing.keys import (
    KeyFileError,
    key_id,
    load_private_key,
    load_public_key,
    new_key_pair,
    parse_public_key_line,
    public_of,
)


def test_new_key_pair_writes_a_private_pem_and_a_public_line(tmp_path: Path) -> None:
    private, public = new_key_pair(tmp_path / "keys", "li.wei")
    assert (private.name, public.name) == ("li.wei.key", "li.wei.pub")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    line = public.read_text()
    assert line.endswith(" li.wei\n") and line.startswith("ed25519:")
    key = load_private_key(private)
    trusted = load_public_key(public)
    assert trusted.name == "li.wei"
    assert trusted.raw == key.public_key().public_bytes(serialization.Encoding.Raw,
                                                        serialization.PublicFormat.Raw)
    assert trusted.raw == public_of(key).raw
    assert key_id(trusted) == key_id(key.public_key()) == trusted.key_id
    assert len(trusted.key_id) == 16 and int(trusted.key_id, 16) >= 0
    # the line round-trips
    assert parse_public_key_line(trusted.line()) == trusted


def test_refuses_to_overwrite_either_file(tmp_path: Path) -> None:
    private, public = new_key_pair(tmp_path, "ops")
    before = private.read_bytes(), public.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        new_key_pair(tmp_path, "ops")
    public.unlink()
    with pytest.raises(KeyFileError, match="already exists"):
        new_key_pair(tmp_path, "ops")  # the private key alone still blocks it
    assert private.read_bytes() == before[0]


def test_passphrase_protected_key(tmp_path: Path) -> None:
    private, _public = new_key_pair(tmp_path, "vault", passphrase=b"correct horse")
    assert b"ENCRYPTED" in private.read_bytes()
    with pytest.raises(KeyFileError, match="passphrase is needed"):
        load_private_key(private)
    with pytest.raises(KeyFileError, match=r"wrong passphrase|not a PEM"):
        load_private_key(private, b"wrong")
    assert isinstance(load_private_key(private, b"correct horse"), Ed25519PrivateKey)


def test_private_key_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="no such key file"):
        load_private_key(tmp_path / "missing.key")
    junk = tmp_path / "junk.key"
    junk.write_text("hello")
    junk.chmod(0o600)
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        load_private_key(junk)
    private, _ = new_key_pair(tmp_path, "open")
    private.chmod(0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        load_private_key(private)


@pytest.mark.parametrize(("line", "reason"), [
    ("ssh-ed25519 AAAAC3Nza li", "not a public key line"),
    ("ed25519:!!!! li", "not a public key line"),
    ("ed25519:AAAA li", "decodes to 3 bytes"),
    ("ed25519:" + base64.b64encode(bytes(31)).decode() + "x li", "not valid base64"),
    ("", "not a public key line"),
])
def test_bad_public_key_lines(line: str, reason: str) -> None:
    with pytest.raises(KeyFileError, match=reason):
        parse_public_key_line(line)


def test_public_key_file_with_two_lines_is_refused(tmp_path: Path) -> None:
    _, public = new_key_pair(tmp_path, "a")
    _, other = new_key_pair(tmp_path, "b")
    both = tmp_path / "both.pub"
    both.write_text(public.read_text() + other.read_text())
    with pytest.raises(KeyFileError, match="found 2"):
        load_public_key(both)


def test_bad_key_names(tmp_path: Path) -> None:
    for name in ("../evil", "", "a b", ".hidden"):
        with pytest.raises(KeyFileError, match="key name"):
            new_key_pair(tmp_path, name)
    assert list(tmp_path.iterdir()) == []
