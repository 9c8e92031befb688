"""`roomwarden flash`: check a config locally, sign it, send it to a gateway over MQTT and
follow the gateway's `config/status` answers until it is applied, rejected or rolled back.

Exit status: 0 only when the gateway reports `applied`; 1 when it rejects the config, rolls it
back or does not answer in time; 2 when nothing was sent (invalid config, key, broker …).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import queue
import ssl
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config.loader import ConfigErrors, LoadedConfig
from gateway.contract.wire import (
    DEFAULT_ROOT,
    MAX_CONFIG_BYTES,
    Channel,
    ConfigStatus,
    ContractError,
    Topic,
    decode,
    encode,
)
from gateway.flashing.envelope import sign_config
from gateway.flashing.keys import KeyFileError, load_private_key, load_public_key
from gateway.mqtt_client import ClientOptions, TlsOptions, build_client

TERMINAL = ("applied", "rejected", "rolled_back")


class FlashError(Exception):
    """Nothing was sent: the message says why."""


@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool


def parse_broker_url(url: str) -> BrokerUrl:
    """`mqtt://host[:port]` (default 1883) or `mqtts://host[:port]` (TLS, default 8883); a bare
    `host[:port]` means mqtt://."""
    text = url if "://" in url else f"mqtt://{url}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise FlashError(f"broker URL {url!r}: {exc}") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise FlashError(f"broker URL {url!r}: the scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise FlashError(f"broker URL {url!r} names no host")
    if parts.path not in ("", "/") or parts.query or parts.username or parts.password:
        raise FlashError(f"broker URL {url!r}: only mqtt[s]://host:port (give credentials "
                         "with --username and --password-file)")
    tls = parts.scheme == "mqtts"
    return BrokerUrl(parts.hostname, port or (8883 if tls else 1883), tls)


@dataclass
class FlashOptions:
    config: Path
    gateway: str
    broker: str
    key: Path
    passphrase: bytes | None = None
    author: str | None = None
    version: int | None = None
    force: bool = False
    timeout: float = 60.0
    """How long to wait for the gateway's final answer after sending."""
    site: str | None = None
    root: str | None = None
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False
    status_wait: float = 2.0
    """How long to wait for the gateway's retained status (to pick the next version)."""
    connect_timeout: float = 10.0


def check_config(path: Path) -> LoadedConfig:
    """The checks `roomwarden check` makes on a gateway config (schema, references, profiles,
    rule packs and overrides); ConfigErrors listing every problem."""
    from gateway.rules.config import load_checked_config

    return load_checked_config(path)


class _Link:
    """A paho client run on its own thread; status messages arrive on `inbox`."""

    def __init__(self, options: FlashOptions, broker: BrokerUrl) -> None:
        self.inbox: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.refused: str | None = None
        tls = TlsOptions(options.ca_file, options.cert_file, options.key_file,
                         options.insecure) if broker.tls else None
        client = build_client(ClientOptions(
            client_id=f"roomwarden-flash-{uuid.uuid4().hex[:12]}", clean_session=True,
            username=options.username or None,
            password=options.password if options.username else None, tls=tls))

        def on_connect(_c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
            if rc.is_failure:
                self.refused = str(rc)
            self.connected.set()

        def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode],
                         _p: Any) -> None:
            if any(code.is_failure for code in codes):
                self.refused = f"subscription refused: {codes[0]}"
            self.subscribed.set()

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            self.inbox.put((msg.topic, bytes(msg.payload), bool(msg.retain)))

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        self.client = client

    def open(self, broker: BrokerUrl, timeout: float) -> None:
        try:
            self.client.connect(broker.host, broker.port, keepalive=30)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise FlashError(f"cannot connect to {broker.host}:{broker.port}: {exc}") from None
        self.client.loop_start()
        if not self.connected.wait(timeout):
            raise FlashError(f"no answer from the broker {broker.host}:{broker.port} "
                             f"within {timeout:g}s")
        if self.refused:
            raise FlashError(f"the broker refused the connection: {self.refused}")

    def subscribe(self, topic: str, timeout: float) -> None:
        self.client.subscribe(topic, qos=1)
        if not self.subscribed.wait(timeout):
            raise FlashError(f"the broker did not confirm the subscription to {topic}")
        if self.refused:
            raise FlashError(f"the broker refused {topic}: {self.refused}")

    def publish(self, topic: str, payload: bytes, timeout: float) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=False)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise FlashError(f"could not publish to {topic}: {exc}") from None
        if not info.is_published():
            raise FlashError(f"the broker did not acknowledge the config within {timeout:g}s")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


def _status(topic: str, payload: bytes, root: str) -> ConfigStatus | None:
    try:
        message = decode(topic, payload, root=root)
    except ContractError:
        return None
    return message if isinstance(message, ConfigStatus) else None


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "?"


def describe(status: ConfigStatus) -> str:
    """One progress line for a status."""
    version = f"version {status.version}" if status.version is not None else "the config"
    active = (f"; running version {status.active_version} (sha256 "
              f"{_short(status.active_sha256)})" if status.active_version is not None else "")
    why = f" [{status.code}]" if status.code else ""
    error = f": {status.error}" if status.error else ""
    if status.state == "received":
        return f"received: the gateway got {version}{active}"
    if status.state == "staged":
        return f"staged: {version} passed the gateway's checks"
    if status.state == "applying":
        return f"applying: {version} is starting{active}"
    if status.state == "applied":
        return f"applied: {version} is running (sha256 {_short(status.sha256)})"
    if status.state == "rejected":
        return f"REJECTED{why}{error}{active}"
    return f"ROLLED BACK{why}{error}{active}"


def default_author(key_path: Path) -> str:
    public = key_path.with_suffix(".pub")
    with contextlib.suppress(KeyFileError):
        name = load_public_key(public).name
        if name:
            return name
    return key_path.stem or getpass.getuser()


def flash(options: FlashOptions, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Check, sign, send and follow one config (see the module docstring for exit codes)."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        return _flash(options, out)
    except FlashError as exc:
        print(f"flash: {exc}", file=err, flush=True)
        return 2


def _say(out: TextIO, text: str) -> None:
    print(text, file=out, flush=True)


def _flash(o: FlashOptions, out: TextIO) -> int:
    try:
        loaded = check_config(o.config)
    except ConfigErrors as exc:
        lines = [f"FAIL {o.config}: {len(exc.errors)} error(s); nothing was sent"]
        lines += [f"  {e}" for e in exc.errors]
        raise FlashError("\n".join(lines)) from None
    cfg = loaded.config
    try:
        text = o.config.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FlashError(f"cannot read {o.config}: {exc}") from None
    size = len(text.encode("utf-8"))
    if size > MAX_CONFIG_BYTES:
        raise FlashError(f"{o.config} is {size} bytes; a flashed config is at most "
                         f"{MAX_CONFIG_BYTES}")
    if cfg.gateway.id != o.gateway:
        raise FlashError(f"{o.config} is the config of gateway {cfg.gateway.id}, not "
                         f"{o.gateway}; nothing was sent")
    site = o.site or cfg.gateway.site
    if site != cfg.gateway.site:
        raise FlashError(f"{o.config} says site {cfg.gateway.site}, not {site}")
    root = o.root or (cfg.uplink.root if cfg.uplink is not None else DEFAULT_ROOT)
    _say(out, f"checked {o.config}: gateway {cfg.gateway.id} at {site}, {len(cfg.devices)} "
              f"devices, {size} bytes")
    try:
        key = load_private_key(o.key, o.passphrase)
    except KeyFileError as exc:
        raise FlashError(str(exc)) from None
    author = o.author or default_author(o.key)
    broker = parse_broker_url(o.broker)
    try:
        set_topic = Topic(site, o.gateway, Channel.CONFIG_SET, root)
        status_topic = Topic(site, o.gateway, Channel.CONFIG_STATUS, root)
    except ContractError as exc:
        raise FlashError(str(exc)) from None

    link = _Link(o, broker)
    try:
        link.open(broker, o.connect_timeout)
        link.subscribe(str(status_topic), o.connect_timeout)
        retained: ConfigStatus | None = None
        early: list[tuple[str, bytes, bool]] = []
        if o.version is None:
            deadline = time.monotonic() + o.status_wait
            while retained is None and (left := deadline - time.monotonic()) > 0:
                try:
                    item = link.inbox.get(timeout=left)
                except queue.Empty:
                    break
                status = _status(item[0], item[1], root)
                if status is not None and item[2]:
                    retained = status
                else:
                    early.append(item)
            if retained is None:
                version = 1
                _say(out, "the gateway has not reported its config (no retained status on "
                          f"{status_topic}); sending version 1")
            else:
                version = max(retained.active_version or 0, retained.version or 0) + 1
                running = ("an unknown version" if retained.active_version is None
                           else f"version {retained.active_version}")
                _say(out, f"the gateway runs {running} (sha256 "
                          f"{_short(retained.active_sha256)}); sending version {version}")
        else:
            version = o.version
        try:
            envelope = sign_config(text, gateway=o.gateway, version=version, author=author,
                                   private_key=key, force=o.force)
            payload = encode(envelope)
        except ContractError as exc:
            raise FlashError(f"cannot build the envelope: {exc}") from None
        for item in early:
            link.inbox.put(item)
        link.publish(str(set_topic), payload, o.connect_timeout)
        _say(out, f"sent version {version}{' (forced)' if o.force else ''} signed by {author} "
                  f"(key {envelope.key_id}) to {set_topic}, request {envelope.id}")
        return _follow(link, envelope.id, root, o.timeout, out)
    finally:
        link.close()


def _follow(link: _Link, request_id: str, root: str, timeout: float, out: TextIO) -> int:
    deadline = time.monotonic() + timeout
    last: str | None = None
    while (left := deadline - time.monotonic()) > 0:
        try:
            topic, payload, _retained = link.inbox.get(timeout=min(left, 0.5))
        except queue.Empty:
            continue
        status = _status(topic, payload, root)
        if status is None or status.id != request_id:
            continue
        if status.state == last:
            continue
        last = status.state
        _say(out, describe(status))
        if status.state in TERMINAL:
            return 0 if status.state == "applied" else 1
    _say(out, f"no final answer from the gateway within {timeout:g}s"
              + (f" (last: {last})" if last else " (is it online and subscribed?)"))
    return 1


def read_secret(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise FlashError(f"cannot read {path}: {exc}") from None


def default_keys_dir() -> Path:
    """`$ROOMWARDEN_KEYS`, else `$XDG_CONFIG_HOME/roomwarden/keys` (~/.config/…)."""
    env = os.environ.get("ROOMWARDEN_KEYS")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "roomwarden" / "keys"


def default_key() -> Path:
    """`$ROOMWARDEN_KEY`, else the only `*.key` in default_keys_dir()."""
    env = os.environ.get("ROOMWARDEN_KEY")
    if env:
        return Path(env)
    directory = default_keys_dir()
    keys = sorted(directory.glob("*.key")) if directory.is_dir() else []
    if len(keys) == 1:
        return keys[0]
    if not keys:
        raise FlashError(f"no signing key in {directory}; make one with `roomwarden keys new "
                         "NAME` or give --key")
    raise FlashError(f"{len(keys)} keys in {directory}; choose one with --key")
