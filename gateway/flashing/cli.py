"""The `keys`, `flash` and `config` commands of `roomwarden` (registered by gateway.cli)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The commands' modules (paho, cryptography) are imported when a command runs: `roomwarden run`
# builds this parser too and should not pay for them.
if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]


def add_parsers(sub: SubParsers) -> SubParsers:
    """Register `keys new`, `flash` and `config diff` on the `roomwarden` subparsers; returns
    the `config` command's own subparsers, so that more `config …` commands can join."""
    keys = sub.add_parser("keys", help="make signing keys for config flashing")
    keys_sub = keys.add_subparsers(title="keys commands")
    new = keys_sub.add_parser("new", help="make an Ed25519 key pair NAME.key / NAME.pub")
    new.add_argument("name", help="the key's name: its file names and the public key's comment")
    new.add_argument("--dir", type=Path, default=None,
                     help="where to write the files (default: $ROOMWARDEN_KEYS or "
                          "~/.config/roomwarden/keys)")
    new.add_argument("--passphrase-file", type=Path, default=None,
                     help="encrypt the private key with the passphrase in this file")
    new.set_defaults(func=cmd_keys_new)

    fl = sub.add_parser("flash", help="check, sign and send a config to a gateway over MQTT")
    fl.add_argument("config", type=Path, help="the gateway config file (YAML) to send")
    fl.add_argument("--gateway", required=True, metavar="ID",
                    help="the gateway to flash (must be the config's gateway.id)")
    fl.add_argument("--broker", required=True, metavar="URL",
                    help="mqtt://host:port or mqtts://host:port")
    fl.add_argument("--key", type=Path, default=None,
                    help="private key (default: $ROOMWARDEN_KEY, or the only key in the "
                         "keys directory)")
    fl.add_argument("--passphrase-file", type=Path, default=None,
                    help="file holding the private key's passphrase (if it has one)")
    fl.add_argument("--author", default=None, help="who flashes (default: the key's name)")
    fl.add_argument("--version", dest="config_version", type=int, default=None, metavar="N",
                    help="config version (default: the gateway's highest + 1)")
    fl.add_argument("--force", action="store_true",
                    help="on purpose, signed: a version at or below the gateway's (a "
                         "downgrade) or far above it, a config that moves the gateway to "
                         "another site or topic root, or one that no longer trusts this key")
    fl.add_argument("--timeout", default="60s",
                    help="how long to wait for the gateway's answer (default 60s)")
    fl.add_argument("--site", default=None, help="default: the config's gateway.site")
    fl.add_argument("--root", default=None,
                    help="topic root (default: the config's uplink.root, or roomwarden)")
    add_broker_options(fl)
    fl.set_defaults(func=cmd_flash)

    config = sub.add_parser("config", help="work with gateway configs")
    config_sub: SubParsers = config.add_subparsers(title="config commands")
    diff = config_sub.add_parser("diff", help="show what changes between two configs "
                                              "(exit 0 equal, 1 different, 2 error)")
    diff.add_argument("old", type=Path, help="the config as it is (YAML)")
    diff.add_argument("new", type=Path, help="the config as it would be (YAML)")
    diff.set_defaults(func=cmd_config_diff)
    return config_sub


def add_broker_options(p: argparse.ArgumentParser) -> None:
    """Credentials and TLS for the broker: `flash` and the operator commands (`ack` …)."""
    p.add_argument("--username", default=None, help="broker user name")
    p.add_argument("--password-file", type=Path, default=None,
                   help="file holding the broker password (never on the command line)")
    p.add_argument("--ca-file", default=None, help="CA bundle for mqtts:// (default: system)")
    p.add_argument("--cert-file", default=None, help="client certificate (mutual TLS)")
    p.add_argument("--cert-key-file", default=None, help="the client certificate's key")
    p.add_argument("--insecure", action="store_true",
                   help="skip the broker host-name check (test benches only)")


def broker_options(args: argparse.Namespace) -> dict[str, Any]:
    """FlashOptions' connection fields from `add_broker_options` (reads the password file)."""
    from gateway.flashing.flash_client import read_secret

    return {"username": args.username, "password": read_secret(args.password_file),
            "ca_file": args.ca_file, "cert_file": args.cert_file,
            "key_file": args.cert_key_file, "insecure": args.insecure}


def cmd_keys_new(args: argparse.Namespace) -> int:
    from gateway.flashing.flash_client import FlashError, default_keys_dir, read_secret
    from gateway.flashing.keys import KeyFileError, key_id, load_public_key, new_key_pair

    directory: Path = args.dir or default_keys_dir()
    try:
        passphrase = read_secret(args.passphrase_file)
        private, public = new_key_pair(directory, args.name,
                                       passphrase=passphrase.encode() if passphrase else None)
        trusted = load_public_key(public)
    except (KeyFileError, FlashError) as exc:
        print(f"keys: {exc}", file=sys.stderr)
        return 1
    print(f"private key {private} (keep it secret; mode 0600)")
    print(f"public key  {public}, key id {key_id(trusted)}")
    print("trust it on a gateway: to flash configs, add this line to the config's "
          "flashing.trusted_keys:")
    print(f"  - \"{trusted.line()}\"")
    print("and/or, for remote commands (roomwarden ack|shelve|…), to operators.keys:")
    print(f"  - {{key: \"{trusted.line()}\", may: [acknowledge]}}")
    return 0


def cmd_flash(args: argparse.Namespace) -> int:
    from gateway.config.duration import parse_duration
    from gateway.flashing.flash_client import (
        FlashError,
        FlashOptions,
        default_key,
        flash,
        read_secret,
    )

    try:
        timeout = parse_duration(args.timeout)
        passphrase = read_secret(args.passphrase_file)
        options = FlashOptions(
            config=args.config, gateway=args.gateway, broker=args.broker,
            key=args.key or default_key(),
            passphrase=passphrase.encode() if passphrase else None, author=args.author,
            version=args.config_version, force=args.force, timeout=timeout, site=args.site,
            root=args.root, **broker_options(args))
    except (ValueError, FlashError) as exc:
        print(f"flash: {exc}", file=sys.stderr)
        return 2
    if options.version is not None and options.version < 1:
        print("flash: --version must be at least 1", file=sys.stderr)
        return 2
    return flash(options)


def cmd_config_diff(args: argparse.Namespace) -> int:
    from gateway.config.report import load_or_report
    from gateway.flashing.diff import diff_configs, render

    old, new = load_or_report(args.old), load_or_report(args.new)
    if old is None or new is None:
        return 2
    changes = diff_configs(old.config, new.config)
    if not changes:
        print(f"no differences between {args.old} and {args.new}")
        return 0
    print(f"--- {args.old}\n+++ {args.new}")
    print(render(changes))
    return 1
