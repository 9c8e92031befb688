"""`roomwarden simulate` (serve every device of a config on loopback) and `roomwarden simctl`
(one JSON command to a running simulator's control channel)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config.duration_parse import duration_arg
from gateway.config.report import CONFIG_HELP, load_or_report

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]


def add_parsers(sub: SubParsers) -> None:
    """Register `simulate` and `simctl` on the `roomwarden` subparsers `sub`."""
    simulate = sub.add_parser("simulate", help="serve every device of a config on loopback")
    simulate.add_argument("config", type=Path, help=CONFIG_HELP)
    simulate.add_argument("--write-config", type=Path, required=True, metavar="PATH",
                          help="write a copy of the config that points at the simulator")
    simulate.add_argument("--control-port", type=int, default=0,
                          help="loopback TCP port of the JSON-lines control channel (0 = any)")
    simulate.add_argument("--duration", type=duration_arg, metavar="DURATION",
                          help="stop after DURATION (e.g. 2m; default: at Ctrl-C)")
    simulate.set_defaults(func=cmd_simulate)

    simctl = sub.add_parser("simctl", help="send one JSON command to a running simulator")
    simctl.add_argument("port", type=int, help="the simulator's control port")
    simctl.add_argument("command", help='e.g. \'{"cmd": "fault", "device": "th-1", '
                                        '"mode": "no_reply"}\'')
    simctl.set_defaults(func=cmd_simctl)


def cmd_simulate(args: argparse.Namespace) -> int:
    loaded = load_or_report(args.config)
    if loaded is None:
        return 1
    from gateway.sim.runner import run_simulator

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_simulator(loaded, args.write_config, args.control_port, args.duration))
    return 0


def cmd_simctl(args: argparse.Namespace) -> int:
    from gateway.sim.runner import parse_command, send_control

    try:
        command = parse_command(args.command)
    except ValueError as exc:
        print(f"not a command: {exc}", file=sys.stderr)
        return 2
    try:
        reply = asyncio.run(send_control(args.port, command))
    except (OSError, TimeoutError) as exc:
        print(f"no simulator on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(reply)
    return 0 if json.loads(reply).get("ok") else 1
