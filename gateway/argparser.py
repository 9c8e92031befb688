"""The `roomwarden` command's argument parser: argparse's, without importing shutil.

argparse makes a help formatter at every `add_argument` (to check its metavar) and its
formatter imports `shutil` for the terminal's width, which brings `bz2` and `lzma` with their
libraries: 0.5 MiB held by every running gateway that never prints a help text (issue 15).
`Parser` gives its formatter the width itself: `COLUMNS`, else the terminal's, else 80 — as
`shutil.get_terminal_size` finds it — less argparse's margin of 2. Sub-commands' parsers are
`Parser`s too (argparse makes them of the parent's class).

`control_options` is the `--socket` option of every command that talks to the running gateway
(`run` among them: it lives here so that `run`'s parser needs no other command's module).

`run_command` runs a command so that one whose stdout is closed under it (`roomwarden plan … |
head`) ends quietly with 141, as a command killed by SIGPIPE would, instead of a
BrokenPipeError traceback (Python ignores SIGPIPE and raises it at the next write).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
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


EXIT_STDOUT_CLOSED = 141
"""128 + SIGPIPE: what a shell reports for a command that wrote into a closed pipe."""


def run_command(command: Callable[[], int]) -> int:
    """`command()`'s exit status, or EXIT_STDOUT_CLOSED when it wrote into a closed stdout."""
    try:
        code = command()
        sys.stdout.flush()  # what is still buffered fails here, not in the interpreter's exit
    except BrokenPipeError:
        if not silence_closed_streams():
            raise  # a socket's, with stdout still there: a real error
        return EXIT_STDOUT_CLOSED
    return code


def silence_closed_streams() -> bool:
    """stdout and stderr, where the reader of their pipe has gone, pointed at /dev/null (so
    that no later write, nor the interpreter's flush at exit, fails again); True if stdout
    was one of them."""
    import select

    closed = []
    for stream in (sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
            poll = select.poll()
            poll.register(fd, select.POLLOUT)
            events = dict(poll.poll(0)).get(fd, 0)
        except (AttributeError, OSError, ValueError):  # replaced (tests) or closed
            continue
        if events & select.POLLERR:  # Linux: the pipe's read end is closed
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
            closed.append(stream)
    return sys.stdout in closed
