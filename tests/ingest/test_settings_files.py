"""`roomwarden ingest --check` checks the files the central config names, not only the YAML:
the broker password, the TLS CA, client certificate and key, the database token or password.
It passed (exit 0) on the unmodified central/central.example.yaml, whose files do not exist;
and the service itself, started, named only the first missing secret — or, with the secrets
there and the CA file missing, died in paho's tls_set with a FileNotFoundError traceback."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.config.yamlfile import ConfigErrors
from gateway.ingest.cli import main
from gateway.ingest.settings import load_settings
from gateway.ingest.settings_files import file_errors

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "central" / "central.example.yaml"


def _pem_pair(d: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = d / f"{name}.pem", d / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def central(d: Path, **files: str) -> Path:
    """A central config naming files in `d` (relative paths: relative to the YAML)."""
    data = {
        "mqtt": {"host": "127.0.0.1", "port": 8883, "protocol": "5", "client_id": "ingest-1",
                 "username": "ingest", "password_file": files.get("password", "mqtt.password"),
                 "tls": {"ca_file": files.get("ca", "ca.pem"),
                         "cert_file": files.get("cert", "client.pem"),
                         "key_file": files.get("key", "client.key")}},
        "influx": {"url": "http://127.0.0.1:9", "token_file": files.get("token", "influx.token"),
                   "org": "ops", "bucket": "b"},
        "dead_letter": "state/dead.jsonl", "catalog_store": "state/catalogs.sqlite"}
    path = d / "central.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def complete(tmp_path: Path) -> Path:
    """Every file the config names, there and usable."""
    (tmp_path / "mqtt.password").write_text("pw\n")
    (tmp_path / "influx.token").write_text("token\n")
    ca, _ = _pem_pair(tmp_path, "ca")
    cert, key = _pem_pair(tmp_path, "client")
    assert (ca.name, cert.name, key.name) == ("ca.pem", "client.pem", "client.key")
    return central(tmp_path)


@pytest.mark.skipif(any(Path(p).exists() for p in (
    "/etc/roomwarden/mqtt.password", "/etc/roomwarden/ca.pem", "/etc/roomwarden/influx.token")),
    reason="this machine has the example's files")
def test_the_unmodified_example_fails_its_check_naming_each_file(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(EXAMPLE), "--check"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no settings printed as if all were well
    err = captured.err.splitlines()
    assert len(err) == 3, err
    for line, (key, file) in zip(err, [("mqtt.password_file", "/etc/roomwarden/mqtt.password"),
                                       ("mqtt.tls.ca_file", "/etc/roomwarden/ca.pem"),
                                       ("influx.token_file", "/etc/roomwarden/influx.token")],
                                 strict=True):
        assert line.startswith(f"{EXAMPLE}:"), line
        assert f": {key}: cannot read {file}: No such file or directory" in line, line


def test_a_complete_config_passes(complete: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(complete), "--check"]) == 0
    out = capsys.readouterr().out
    assert '"client_id": "ingest-1"' in out and "token\n" not in out


def test_each_missing_or_unreadable_file_is_an_error(complete: Path) -> None:
    d = complete.parent
    (d / "mqtt.password").unlink()
    (d / "influx.token").unlink()
    (d / "influx.token").mkdir()  # there, but no file to read
    (d / "client.key").unlink()
    with pytest.raises(ConfigErrors) as caught:
        load_settings(complete, check_files=True)
    found = {(".".join(map(str, e.path)), e.reason) for e in caught.value.errors}
    assert found == {
        ("mqtt.password_file", f"cannot read {d / 'mqtt.password'}: No such file or directory"),
        ("mqtt.tls.key_file", f"cannot read {d / 'client.key'}: No such file or directory"),
        ("influx.token_file", f"cannot read {d / 'influx.token'}: Is a directory"),
    }
    assert all(e.file == str(complete) and e.line for e in caught.value.errors)
    load_settings(complete)  # without check_files: the YAML alone, as before


def test_tls_files_that_are_no_certificates(complete: Path) -> None:
    d = complete.parent
    (d / "ca.pem").write_text("not a certificate\n")
    _other_cert, other_key = _pem_pair(d, "other")
    path = central(d, key=other_key.name)  # a key that is not the certificate's
    errors = file_errors(load_settings(path), str(path))
    reasons = {".".join(map(str, e.path)): e.reason for e in errors}
    assert set(reasons) == {"mqtt.tls.ca_file", "mqtt.tls.cert_file"}, reasons
    assert reasons["mqtt.tls.ca_file"].startswith(f"{d / 'ca.pem'} holds no usable CA")
    assert reasons["mqtt.tls.cert_file"].startswith(
        f"{d / 'client.pem'} with the key {other_key} is no usable client certificate")


@pytest.mark.process
@pytest.mark.parametrize("missing", [["ca.pem"], ["ca.pem", "influx.token"]],
                         ids=["ca", "ca-and-token"])
def test_the_service_names_every_missing_file_at_start(complete: Path,
                                                       missing: list[str]) -> None:
    """Started without --check (as systemd starts it): the same errors, exit 2, no
    traceback, nothing created."""
    d = complete.parent
    for name in missing:
        (d / name).unlink()
    result = subprocess.run([sys.executable, "-m", "gateway", "ingest", "--config",
                             str(complete)], capture_output=True, text=True, timeout=60,
                            cwd=ROOT, env={**os.environ, "NOTIFY_SOCKET": ""}, check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert f"mqtt.tls.ca_file: cannot read {d / 'ca.pem'}" in result.stderr
    assert (f"influx.token_file: cannot read {d / 'influx.token'}" in result.stderr) == (
        "influx.token" in missing)
    assert not (d / "state").exists()
