"""`roomwarden ack | shelve | unshelve | suppress | unsuppress | reset-output`: sign an
operator command, send it to a gateway's `cmd` topic and print the gateway's answer from
`cmd/result`.

Uses the flash client's MQTT link and options (broker URL, credentials, TLS). Exit status: 0
when the gateway carried the command out; 1 when it refused it (the code and reason are
printed) or did not answer in time; 2 when nothing was sent (bad key, alarm or broker).
"""

from __future__ import annotations

import queue
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from gateway.contract.wire import (
    DEFAULT_ROOT,
    AlarmRef,
    Channel,
    CommandResult,
    ContractError,
    Topic,
    decode,
    encode,
)
from gateway.flashing.flash_client import FlashError, FlashOptions, _Link, parse_broker_url
from gateway.flashing.keys import KeyFileError, load_private_key
from gateway.operator.signing import sign_command
from gateway.records import dataclass, field


@dataclass
class CommandOptions:
    gateway: str
    site: str
    fields: dict[str, Any]
    """The command's action and its fields (`action`, `alarms`, `until` …)."""
    connection: FlashOptions
    """Broker, key and TLS/credentials, as for `roomwarden flash` (its `config` is unused)."""
    root: str = DEFAULT_ROOT
    lifetime_s: float = 120.0
    """How long the command stays valid (the gateway refuses it after that)."""
    timeout: float = 30.0
    """How long to wait for the gateway's answer."""
    summary: str = field(default="")


def parse_alarm(text: str) -> AlarmRef:
    """`rule@subject` (as the panel, the journal and `status` print an alarm)."""
    rule, at, subject = text.partition("@")
    if not at or not rule or not subject:
        raise FlashError(f"alarm {text!r}: expected RULE@SUBJECT, e.g. "
                         "explosion.h2_alarm@h2-batt-01.h2")
    try:
        return AlarmRef(rule=rule, subject=subject)
    except ValueError as exc:
        raise FlashError(f"alarm {text!r}: {exc}") from None


def send_command(options: CommandOptions, out: TextIO | None = None,
                 err: TextIO | None = None) -> int:
    """Sign, send, wait for the answer (see the module docstring for the exit status)."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        return _send(options, out)
    except FlashError as exc:
        print(f"{options.fields.get('action', 'command')}: {exc}", file=err, flush=True)
        return 2


def _send(o: CommandOptions, out: TextIO) -> int:
    conn = o.connection
    try:
        key = load_private_key(conn.key, conn.passphrase)
    except KeyFileError as exc:
        raise FlashError(str(exc)) from None
    try:
        command = sign_command(o.fields, key, gateway=o.gateway, site=o.site, root=o.root,
                               lifetime_s=o.lifetime_s)
        cmd_topic = Topic(o.site, o.gateway, Channel.CMD, o.root)
        result_topic = Topic(o.site, o.gateway, Channel.CMD_RESULT, o.root)
        payload = encode(command)
    except ContractError as exc:
        raise FlashError(f"cannot build the command: {exc}") from None
    broker = parse_broker_url(conn.broker)
    link = _Link(conn, broker)
    try:
        link.open(broker, conn.connect_timeout)
        link.subscribe(str(result_topic), conn.connect_timeout)  # before sending: no race
        link.publish(str(cmd_topic), payload, conn.connect_timeout)
        print(f"sent {command.action} {command.id} (key {command.key_id}, valid "
              f"{o.lifetime_s:g} s) to {cmd_topic}", file=out, flush=True)
        return _follow(link, command.id, o.root, o.timeout, out)
    finally:
        link.close()


def _follow(link: _Link, cid: str, root: str, timeout: float, out: TextIO) -> int:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            topic, payload, _retained = link.inbox.get(timeout=min(left, 0.5))
        except queue.Empty:
            continue
        try:
            result = decode(topic, payload, root=root)
        except ContractError:
            continue
        if not isinstance(result, CommandResult) or result.id != cid:
            continue
        print(describe(result), file=out, flush=True)
        return 0 if result.ok else 1
    print(f"no answer from the gateway within {timeout:g} s (is it online and subscribed?)",
          file=out, flush=True)
    return 1


def describe(result: CommandResult) -> str:
    if result.ok:
        changed = "" if result.changed is None else f"{result.changed} alarm(s) changed, "
        note = "" if result.note is None else f"{result.note}, "
        return f"done: {changed}{note}journalled as {result.actor or '?'}"
    return f"REFUSED [{result.code or 'refused'}]: {result.error or 'no reason given'}"


def default_connection(broker: str, key: Path, **kw: Any) -> FlashOptions:
    """The flash client's options, as a command's connection (no config file involved)."""
    return FlashOptions(config=Path("-"), gateway="-", broker=broker, key=key, **kw)
