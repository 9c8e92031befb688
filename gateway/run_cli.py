"""The `roomwarden run` command: its parser and the gateway it runs (gateway.cli registers it
among the others; `roomwarden run …` parses with this command's parser alone, issue 15).

`parse_run` reads a `run` command line without argparse: argparse, with the gettext it brings,
stays in a running gateway for good once imported (0.3 MiB of Python objects, issue 15). It
takes only what it knows exactly — the options below, spelled out, each value what their
argparse types accept — and returns None for anything else (`--help`, an abbreviated option,
a bad value, `--`), which the argparse parser then reads (or refuses) as before.
`add_run_parser` is that parser; tests/cli/test_run_args.py checks the two agree.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from gateway.closed_pipe import silence_closed_streams
from gateway.config.duration_parse import duration_value

if TYPE_CHECKING:
    import argparse

    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
    Args = argparse.Namespace | SimpleNamespace


def add_run_parser(sub: SubParsers) -> None:
    from gateway.argparser import control_options
    from gateway.config.duration_parse import duration_arg
    from gateway.config.report import CONFIG_HELP

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


RUN_OPTIONS: dict[str, tuple[str, Callable[[str], object] | None]] = {
    "--print": ("print_every", duration_value),
    "--duration": ("duration", duration_value),
    "--state-dir": ("state_dir", Path),
    "--socket": ("control", Path),
    "--control": ("control", Path),
    "--panel-port": ("panel_port", int),
    "-v": ("verbose", None),
    "--verbose": ("verbose", None),
}
"""`run`'s options as `parse_run` reads them: option → (its value's name, its type; None for
a switch). Their defaults are None (a switch: False), as in `add_run_parser`."""


def parse_run(argv: list[str]) -> SimpleNamespace | None:
    """The values of `run`'s command line (what follows `run`), as the parser of
    `add_run_parser` gives them; None for a command line this does not take as it is."""
    values: dict[str, object] = {dest: None if kind is not None else False
                                 for dest, kind in RUN_OPTIONS.values()}
    config: list[str] = []
    words = iter(argv)
    for word in words:
        if not word.startswith("-"):
            config.append(word)
            continue
        name, equals, given = word.partition("=")
        known = RUN_OPTIONS.get(name)
        if known is None:
            return None  # unknown or abbreviated, `-`, `--`, `-vv`: argparse's to read
        dest, kind = known
        if kind is None:  # a switch
            if equals:
                return None  # `--verbose=…`, which argparse refuses
            values[dest] = True
            continue
        text = given if equals else next(words, None)
        if text is None or (not equals and text.startswith("-")):
            return None  # missing, or a value argparse may take for an option
        try:
            values[dest] = kind(text)
        except ValueError:
            return None  # argparse says why
    if len(config) != 1:
        return None
    return SimpleNamespace(config=Path(config[0]), **values, func=cmd_run)


def cmd_run(args: Args) -> int:
    import asyncio

    from gateway.booting import BootFailed
    from gateway.daemon import default_state_dir
    from gateway.service.instance import ControlSocketInUse, InstanceRefused, claim
    from gateway.supervisor import Service

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
