"""`roomwarden flash`: check a config locally, sign it, send it to a gateway over MQTT and
follow the gateway's `config/status` answers until it is applied, rejected or rolled back.
Before sending it reads the gateway's retained status on every site of its id: the version is
one above its `highest_accepted`, and a config that moves it to another site or topic root is
said and not sent without --force (gateway.flashing.target).

Exit status: 0 only when the gateway reports `applied`; 1 when it rejects the config, rolls it
back or does not answer in time; 2 when nothing was sent (invalid config, key, broker …).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import queue
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from gateway.contract.wire import (
    DEFAULT_ROOT,
    MAX_CONFIG_BYTES,
    Channel,
    ConfigStatus,
    ContractError,
    Topic,
    decode,
    encode,
    topic_filter,
)
from gateway.flashing.envelope import sign_config
from gateway.flashing.keys import KeyFileError, load_private_key, load_public_key
from gateway.flashing.link import FlashError as FlashError
from gateway.flashing.link import Link
from gateway.flashing.link import parse_broker_url as parse_broker_url
from gateway.flashing.target import moves, newest, pick_version, short_sha
from gateway.records import dataclass

if TYPE_CHECKING:
    from gateway.flashing.precheck import ConfigCheck

TERMINAL = ("applied", "rejected", "rolled_back")
RETAINED_GRACE_S = 0.3
"""After the first retained status, how long to wait for more (the gateway's id at other
sites: the broker sends every retained match of a subscription at once)."""
_Link = Link
"""(The operator commands' client, gateway.operator.client, takes the link by this name.)"""


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


def check_config(path: Path) -> ConfigCheck:
    """The check `roomwarden check` makes of a gateway config (schema, references, profiles,
    rule packs and overrides), with its lines as `check` prints them."""
    from gateway.flashing.precheck import check_gateway_config

    return check_gateway_config(path)


def _status(topic: str, payload: bytes, roots: list[str]) -> ConfigStatus | None:
    for root in roots:
        try:
            message = decode(topic, payload, root=root)
        except ContractError:
            continue
        return message if isinstance(message, ConfigStatus) else None
    return None


def describe(status: ConfigStatus) -> str:
    """One progress line for a status."""
    version = f"version {status.version}" if status.version is not None else "the config"
    active = (f"; running version {status.active_version} (sha256 "
              f"{short_sha(status.active_sha256)})" if status.active_version is not None else "")
    why = f" [{status.code}]" if status.code else ""
    error = f": {status.error}" if status.error else ""
    if status.state == "received":
        return f"received: the gateway got {version}{active}"
    if status.state == "staged":
        return f"staged: {version} passed the gateway's checks"
    if status.state == "applying":
        return f"applying: {version} is starting{active}"
    if status.state == "applied":
        return f"applied: {version} is running (sha256 {short_sha(status.sha256)})"
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
        return _flash(options, out, err)
    except FlashError as exc:
        print(f"flash: {exc}", file=err, flush=True)
        return 2


def _say(out: TextIO, text: str) -> None:
    print(text, file=out, flush=True)


def _flash(o: FlashOptions, out: TextIO, err: TextIO) -> int:
    checked = check_config(o.config)
    if checked.loaded is None:  # the errors exactly as `roomwarden check` prints them
        print("\n".join(checked.lines), file=err, flush=True)
        raise FlashError(f"nothing was sent: {o.config} has {checked.errors} error(s)")
    cfg = checked.loaded.config
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
    for line in checked.lines[1:]:  # `check`'s warnings (a lockout, rules left blind)
        _say(out, line)
    if cfg.profiles_dir is not None:  # checked here against this machine's files only
        _say(out, f"  warning: profiles_dir {cfg.profiles_dir!r} is not sent with the config: "
                  "the gateway reads it on its own disk (relative: beside its installed "
                  "config) — copy those profiles there first, or the gateway refuses it")
    try:
        key = load_private_key(o.key, o.passphrase)
    except KeyFileError as exc:
        raise FlashError(str(exc)) from None
    author = o.author or default_author(o.key)
    broker = parse_broker_url(o.broker)
    try:
        set_topic = Topic(site, o.gateway, Channel.CONFIG_SET, root)
    except ContractError as exc:
        raise FlashError(str(exc)) from None

    link = Link(o, broker)
    try:
        link.open(broker, o.connect_timeout)
        roots = [root]
        watched = topic_filter(Channel.CONFIG_STATUS, root=root, gateway=o.gateway)
        link.subscribe(watched, o.connect_timeout)  # every site: a moved gateway is seen
        retained, early = _retained(link, roots, o.status_wait, o.gateway)
        moved = moves(site, retained.site if retained else None,
                      cfg.uplink.root if cfg.uplink is not None else None, root, force=o.force)
        if moved is not None:
            _say(out, moved)
            if retained is not None:  # where the gateway listens now
                set_topic = Topic(retained.site, o.gateway, Channel.CONFIG_SET, root)
            if cfg.uplink is not None and cfg.uplink.root != root:
                roots.append(cfg.uplink.root)
                link.subscribe(topic_filter(Channel.CONFIG_STATUS, root=cfg.uplink.root,
                                            gateway=o.gateway), o.connect_timeout)
        if retained is None:
            _say(out, "the gateway has not reported its config (no retained status on "
                      f"{watched})" + ("; sending version 1" if o.version is None else ""))
        version, said = pick_version(o.version, retained, force=o.force)
        if said is not None and retained is not None:
            _say(out, said)
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
        return _follow(link, envelope.id, roots, o.timeout, out)
    finally:
        link.close()


def _retained(link: Link, roots: list[str], wait: float, gateway: str
              ) -> tuple[ConfigStatus | None, list[tuple[str, bytes, bool]]]:
    """The gateway's newest retained status (on any site), and the other messages that came
    meanwhile (to be followed after sending)."""
    found: list[ConfigStatus] = []
    early: list[tuple[str, bytes, bool]] = []
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        try:
            item = link.inbox.get(timeout=left)
        except queue.Empty:
            break
        status = _status(item[0], item[1], roots)
        if status is not None and item[2] and status.gateway == gateway:
            found.append(status)
            deadline = min(deadline, time.monotonic() + RETAINED_GRACE_S)
        else:
            early.append(item)
    return newest(found), early


def _follow(link: Link, request_id: str, roots: list[str], timeout: float, out: TextIO) -> int:
    deadline = time.monotonic() + timeout
    last: str | None = None
    while (left := deadline - time.monotonic()) > 0:
        try:
            topic, payload, _retained = link.inbox.get(timeout=min(left, 0.5))
        except queue.Empty:
            continue
        status = _status(topic, payload, roots)
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
