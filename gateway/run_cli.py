"""The `roomwarden run` command: its parser and the gateway it runs (gateway.cli registers it
among the others; `roomwarden run …` parses with this command's parser alone, issue 15)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.argparser import control_options, silence_closed_streams
from gateway.config.duration_parse import duration_arg
from gateway.config.report import CONFIG_HELP

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]


def add_run_parser(sub: SubParsers) -> None:
    run = sub.add_parser("run", help="run the gateway")
    run.add_argument("config", type=Path, help=CONFIG_HELP)
    run.add_argument("--print", dest="print_every", type=duration_arg, metavar="DURATION",
                     help="print the live readings every DURATION (e.g. 5s)")
    run.add_argument("--duration", type=duration_arg, metavar="DURATION",
                     help="stop after DURATION (e.g. 3s, 10m; default: run until stopped)")
    run.add_argument("--state-dir", type=Path, default=None,
                     help="alarm journal, outbox, flashed configs (default: $STATE_DIRECTORY, "
                          "/var/lib/roomwarden, or ./var)")
    control_options(run)
    run.add_argument("--panel-port", type=int, default=None,
                     help="override the panel's port (0 = any free port)")
    run.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.daemon import default_state_dir
    from gateway.service.instance import ControlSocketInUse, InstanceRefused, claim
    from gateway.supervisor import BootFailed, Service

    state_dir = args.state_dir or default_state_dir()
    try:  # before anything in the state directory is opened (gateway.service.instance)
        held = claim(state_dir, args.control)
    except InstanceRefused as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1

    async def printer(service: Service) -> None:
        while True:
            await asyncio.sleep(args.print_every)
            try:
                print_readings(service.gateway)
            except BrokenPipeError:  # `run --print 5s | head`: the gateway keeps running
                silence_closed_streams()
                logging.getLogger("roomwarden.cli").warning(
                    "event=print_stopped stdout is closed: no more readings are printed; "
                    "the gateway keeps running (stop it with Ctrl-C or SIGTERM)")
                return

    async def main_task() -> int:
        try:  # built inside the loop: pymodbus asks for it
            service = Service(args.config, state_dir=state_dir, control_path=args.control,
                              panel_port=args.panel_port)
        except BootFailed as exc:
            print(f"cannot start: {exc}", file=sys.stderr)
            return 1
        extra = asyncio.create_task(printer(service)) if args.print_every else None
        try:
            await service.run(args.duration)
        except ControlSocketInUse as exc:  # bound by another since `claim` looked
            print(f"cannot start: {exc}", file=sys.stderr)
            return 1
        finally:
            if extra is not None:
                extra.cancel()
        return 0

    with held:  # released once everything in the state directory is closed
        return asyncio.run(main_task())


def print_readings(gateway: object) -> None:
    from gateway.daemon import Gateway
    from gateway.readout import render

    assert isinstance(gateway, Gateway)
    print(render(gateway.bus_loops, gateway.latest), flush=True)
