"""The `ack`, `shelve`, `unshelve`, `suppress`, `unsuppress` and `reset-output` commands of
`roomwarden`: a central operator's signed commands to one gateway (registered by
gateway.cli)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.flashing.cli import add_broker_options, broker_options

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]


def add_parsers(sub: SubParsers) -> None:
    ack = _command(sub, "ack", "acknowledge alarms on a gateway (silences its sirens)")
    which = ack.add_mutually_exclusive_group(required=True)
    which.add_argument("--alarm", action="append", metavar="RULE@SUBJECT",
                       help="an alarm to acknowledge (repeat for several)")
    which.add_argument("--all", action="store_true",
                       help="every alarm waiting for an acknowledgement (key needs "
                            "acknowledge_all)")
    ack.add_argument("--room", default=None, help="with --all: only this room's alarms")
    ack.add_argument("--note", default=None, help="journalled with the acknowledgement")

    shelve = _command(sub, "shelve", "shelve an alarm for a while (hidden, no siren; "
                                           "protective outputs stay on while it is active)")
    shelve.add_argument("--alarm", required=True, metavar="RULE@SUBJECT",
                        help="the alarm to shelve")
    shelve.add_argument("--for", dest="duration", required=True, metavar="DURATION",
                        help="how long, e.g. 30m or 8h (at most 7 days)")
    shelve.add_argument("--reason", required=True, help="why (journalled with the shelving)")

    unshelve = _command(sub, "unshelve", "end an alarm's shelving")
    unshelve.add_argument("--alarm", required=True, metavar="RULE@SUBJECT",
                          help="the shelved alarm")

    suppress = _command(sub, "suppress", "suppress a device's, room's or rule's alarms")
    suppress.add_argument("--scope", required=True, help="a device, room or rule id")
    suppress.add_argument("--for", dest="duration", required=True, metavar="DURATION",
                          help="how long, e.g. 30m or 8h (at most 7 days)")
    suppress.add_argument("--reason", required=True,
                          help="why, e.g. the hot-work permit (journalled)")

    unsuppress = _command(sub, "unsuppress", "end a suppression")
    unsuppress.add_argument("--scope", required=True, help="the suppressed device, room or rule id")

    reset = _command(sub, "reset-output", "release an output held on until an operator resets "
                                          "it (restore_on_clear: false, e.g. a charge inhibit)")
    reset.add_argument("--output", required=True, metavar="ID", help="the output's id")
    reset.add_argument("--note", default=None, help="journalled with the reset")


def _command(sub: SubParsers, name: str, text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=f"{text}: a signed command over MQTT (exit 0 done, 1 "
                                  "refused or no answer, 2 not sent)")
    p.add_argument("--gateway", required=True, metavar="ID", help="the gateway's id")
    p.add_argument("--site", required=True, metavar="ID", help="the gateway's site id")
    p.add_argument("--broker", required=True, metavar="URL",
                   help="mqtt://host:port or mqtts://host:port")
    p.add_argument("--key", type=Path, default=None,
                   help="operator private key (default: $ROOMWARDEN_KEY, or the only key in "
                        "the keys directory); the gateway must trust it under operators.keys")
    p.add_argument("--passphrase-file", type=Path, default=None,
                   help="file holding the private key's passphrase (if it has one)")
    p.add_argument("--root", default="roomwarden", help="topic root (default roomwarden)")
    p.add_argument("--valid-for", default="2m",
                   help="how long the command stays valid (default 2m, at most 15m)")
    p.add_argument("--timeout", default="30s",
                   help="how long to wait for the gateway's answer (default 30s)")
    add_broker_options(p)  # the same credentials and TLS options as `roomwarden flash`
    p.set_defaults(func=run, operator_command=name)
    return p


def run(args: argparse.Namespace) -> int:
    from gateway.config.duration import parse_duration
    from gateway.flashing.flash_client import FlashError, default_key, read_secret
    from gateway.operator.client import (
        CommandOptions,
        default_connection,
        parse_alarm,
        send_command,
    )

    name = args.operator_command
    try:
        fields = _fields(args, parse_alarm, parse_duration)
        passphrase = read_secret(args.passphrase_file)
        connection = default_connection(
            args.broker, args.key or default_key(),
            passphrase=passphrase.encode() if passphrase else None, **broker_options(args))
        options = CommandOptions(gateway=args.gateway, site=args.site, fields=fields,
                                 connection=connection, root=args.root,
                                 lifetime_s=parse_duration(args.valid_for),
                                 timeout=parse_duration(args.timeout))
    except (ValueError, FlashError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    return send_command(options)


def _fields(args: argparse.Namespace, parse_alarm: Any, parse_duration: Any) -> dict[str, Any]:
    import time

    name = args.operator_command
    if name == "ack" and args.all:
        return {"action": "acknowledge_all", "room": args.room, "note": args.note}
    if name == "ack":
        if args.room is not None:
            raise ValueError("--room goes with --all")
        return {"action": "acknowledge", "alarms": [parse_alarm(a) for a in args.alarm],
                "note": args.note}
    if name in ("shelve", "suppress"):
        until = time.time_ns() + int(parse_duration(args.duration) * 1e9)
        target = ({"alarm": parse_alarm(args.alarm)} if name == "shelve"
                  else {"scope": args.scope})
        return {"action": name, **target, "until": until, "reason": args.reason}
    if name == "unshelve":
        return {"action": "unshelve", "alarm": parse_alarm(args.alarm)}
    if name == "reset-output":
        return {"action": "reset_output", "output": args.output, "note": args.note}
    return {"action": "unsuppress", "scope": args.scope}
