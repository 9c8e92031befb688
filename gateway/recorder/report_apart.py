"""An incident's HTML report rendered by a child process, for the panel: the gateway gets the
page, not the work.

Rendering parses the whole record: for a large one (millions of samples) seconds of the
interpreter — json holds it while it parses, so the gateway's alarms would wait — and hundreds
of MiB. The panel renders a record whose files (an open incident's progress file with it:
gateway.recorder.reading) hold at most `IN_PROCESS_BYTES` itself (in a thread: a few
milliseconds) and any larger one in `python -m gateway.recorder.report_apart DIR ID`, with a
time limit (`TIMEOUT`), an address-space limit (`MEMORY_LIMIT`: a record too large for it is
an error the page says, and the kernel, short of memory, kills the child, not the gateway) and
a bound on the page read back (`MAX_PAGE`). The child writes the page to
stdout and exits 0, or writes why not to stderr and exits `REFUSED`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from gateway.isolated_check import child_environment

IN_PROCESS_BYTES = 1 << 20
"""A record file at most this large is rendered in the gateway's process."""
TIMEOUT = 120.0
MEMORY_LIMIT = 2048 * 2**20
"""The child's address space: a record of 4,000,000 samples (the most one keeps) renders
within it on the development machine."""
MAX_PAGE = 64 * 2**20
"""Bytes of page read back at most (plots are reduced to their pixel columns: a page is a few
hundred kilobytes a plot and the timeline's rows)."""
MAX_SAID = 64 * 1024
REFUSED = 3


class RenderFailed(Exception):
    """The child could not render the report (the message says why, for the page)."""


async def render_apart(incidents_dir: Path, incident_id: str, *, timeout: float = TIMEOUT,
                       python: str = sys.executable) -> str:
    """The report's HTML from a child process; RenderFailed saying why not."""
    child = await asyncio.create_subprocess_exec(
        python, "-m", "gateway.recorder.report_apart", str(incidents_dir), incident_id,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=child_environment())
    assert child.stdout is not None and child.stderr is not None
    try:
        page, said = await asyncio.wait_for(asyncio.gather(
            _bounded(child.stdout, MAX_PAGE), _bounded(child.stderr, MAX_SAID)), timeout)
        code = await asyncio.wait_for(child.wait(), timeout)
    except TimeoutError:
        raise RenderFailed(f"the report was not rendered within {timeout:g} s") from None
    except _TooLong:
        raise RenderFailed(f"the report is larger than {MAX_PAGE} bytes") from None
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    message = said.decode(errors="replace").strip()
    if code == REFUSED:
        raise RenderFailed(message[-2000:] or "refused")
    if code != 0:
        last = (message.splitlines() or ["no message"])[-1]
        raise RenderFailed(f"the renderer failed (exit status {code}): {last[:300]}")
    return page.decode()


class _TooLong(Exception):
    pass


async def _bounded(stream: asyncio.StreamReader, limit: int) -> bytes:
    data = bytearray()
    while chunk := await stream.read(65536):
        data += chunk
        if len(data) > limit:
            raise _TooLong
    return bytes(data)


def main(argv: list[str]) -> int:
    import resource

    from gateway.recorder.reading import load
    from gateway.recorder.report import render
    from gateway.recorder.store import IncidentError, IncidentStore

    try:  # (glibc makes it prlimit64, which the unit's system-call filter allows)
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (OSError, ValueError) as exc:
        print(f"event=report_unlimited reason={exc!r}", file=sys.stderr)
    directory, incident_id = argv
    try:
        page = render(load(IncidentStore(Path(directory)), incident_id))
    except IncidentError as exc:
        print(exc, file=sys.stderr)
        return REFUSED
    except MemoryError:
        print(f"incident {incident_id} is too large to render on the gateway (more than "
              f"{MEMORY_LIMIT // 2**20} MiB): export it with `roomwarden incident export`",
              file=sys.stderr)
        return REFUSED
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        print(f"incident {incident_id} lacks what a report needs: {exc!r}", file=sys.stderr)
        return REFUSED
    sys.stdout.buffer.write(page.encode())
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
