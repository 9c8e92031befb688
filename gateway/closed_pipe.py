"""A command whose stdout is closed under it (`roomwarden plan … | head`) ends quietly with 141,
as a command killed by SIGPIPE would, instead of a BrokenPipeError traceback (Python ignores
SIGPIPE and raises it at the next write).

Apart from the argument parser (gateway.argparser), which imports argparse: `roomwarden run`
reads its command line without it (gateway.run_cli, issue 15) and still runs this way.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

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
