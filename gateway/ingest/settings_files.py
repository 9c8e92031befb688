"""The files a central settings file names, checked at the ingest's start and by its check:
each must be there and readable, a TLS CA, certificate and key usable (split from
gateway.ingest.settings, which validates the YAML itself)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config.yamlfile import ConfigError, LineMap, YamlPath

if TYPE_CHECKING:
    from gateway.ingest.settings import IngestSettings


def file_errors(settings: IngestSettings, name: str,
                lines: LineMap | None = None) -> list[ConfigError]:
    """Each file the settings name and the service reads at its start — the broker password,
    the TLS CA, client certificate and key, the database's token or password — that is
    missing, unreadable or (TLS) unusable: an error at the setting's path naming the file."""
    errors: list[ConfigError] = []

    def error(key: YamlPath, reason: str) -> None:
        errors.append(ConfigError(name, key, reason,
                                  lines.line_of(key) if lines is not None else None))

    def readable(key: YamlPath, path: Path | None) -> bool:
        if path is None:
            return False
        try:
            with path.open("rb") as file:
                file.read(1)
        except OSError as exc:
            error(key, f"cannot read {path}: {exc.strerror or exc}")
            return False
        return True

    readable(("mqtt", "password_file"), settings.mqtt.password_file)
    tls = settings.mqtt.tls
    if tls is not None:
        if readable(("mqtt", "tls", "ca_file"), tls.ca_file):
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(
                    cafile=str(tls.ca_file))
            except (ssl.SSLError, ValueError) as exc:
                error(("mqtt", "tls", "ca_file"),
                      f"{tls.ca_file} holds no usable CA certificate: {_ssl_reason(exc)}")
        cert = readable(("mqtt", "tls", "cert_file"), tls.cert_file)
        key = readable(("mqtt", "tls", "key_file"), tls.key_file)
        if cert and key:
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
                    str(tls.cert_file), str(tls.key_file))
            except (ssl.SSLError, ValueError) as exc:
                error(("mqtt", "tls", "cert_file"),
                      f"{tls.cert_file} with the key {tls.key_file} is no usable client "
                      f"certificate: {_ssl_reason(exc)}")
    readable(("influx", "token_file"), settings.influx.token_file)
    readable(("influx", "password_file"), settings.influx.password_file)
    return errors


def _ssl_reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else str(exc)
