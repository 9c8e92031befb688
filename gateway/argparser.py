"""The `roomwarden` command's argument parser: argparse's, without importing shutil.

argparse makes a help formatter at every `add_argument` (to check its metavar) and its
formatter imports `shutil` for the terminal's width, which brings `bz2` and `lzma` with their
libraries: 0.5 MiB held by every running gateway that never prints a help text (issue 15).
`Parser` gives its formatter the width itself: `COLUMNS`, else the terminal's, else 80 — as
`shutil.get_terminal_size` finds it — less argparse's margin of 2. Sub-commands' parsers are
`Parser`s too (argparse makes them of the parent's class).

`control_options` is the `--socket` option of every command that talks to the running gateway
(`run` among them: it lives here so that `run`'s parser needs no other command's module).

`roomwarden run` reads its command line without this module (gateway.run_cli: argparse and the
gettext it brings are 0.3 MiB of Python objects a running gateway would hold for good, issue
15); it is built for `run --help`, for a `run` command line that reader does not take as it
is, and for every other command.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def terminal_columns() -> int:
    """The width `shutil.get_terminal_size()` would give: `COLUMNS` if a positive number, else
    stdout's terminal, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class Formatter(argparse.HelpFormatter):
    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         terminal_columns() - 2 if width is None else width)


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)


SOCKET_HELP = ("the gateway's control socket (default: $RUNTIME_DIRECTORY/control.sock, "
               "i.e. /run/roomwarden/control.sock under systemd, else STATE_DIR/control.sock)")


def control_options(parser: argparse.ArgumentParser) -> None:
    """`--socket` (issue 14: one name and one description in run, status and config apply;
    `--control` still works)."""
    parser.add_argument("--socket", "--control", dest="control", type=Path, default=None,
                        metavar="PATH", help=SOCKET_HELP)
