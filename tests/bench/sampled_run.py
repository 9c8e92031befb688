"""`roomwarden` under a CPU-time sampling profiler, for the whole-process benchmark
(`BENCH_PROCESS_SAMPLE=<start>,<seconds>`, tests/bench/bench_process.py; issue 15).

Where a running gateway's CPU goes cannot be read from cProfile (it multiplies the cost of
small calls several times over, unevenly) nor from py-spy here (its idle detection counted
time asleep in `epoll_wait` and the kernel's loopback `send` as busy: half its samples). This
counts the process's own CPU time instead: `ITIMER_PROF` raises SIGPROF after every
`INTERVAL` of CPU time the process used (user and system, any thread; the kernel accounts it
in ticks, so fewer signals arrive than the interval would give, all of them in proportion),
and the handler — run by the main thread, the event loop's — counts the Python stack it
interrupted. CPU time of the other threads lands on whatever the main thread was doing,
mostly `select` (they are a tenth of the process at 2,000 points). Python runs a handler only
at its checkpoints (a call, a loop's jump back), so a sample lands in the function that was
running, at the checkpoint after the work: trust functions and modules, not lines.

`ROOMWARDEN_SAMPLE=<start>,<seconds>,<path>`: from `start` seconds after the process started,
for `seconds`, then writes the stacks as collapsed lines (`frame;frame;… count`, flame-graph
tools read them) to `path` and the counts by the innermost `gateway/` frame — its module and
its function — to `path` + ".top"."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import CodeType, FrameType

INTERVAL = 0.001
"""Seconds of process CPU time between samples (the kernel's tick bounds it: 4 ms at 250 Hz)."""


SELF = "(the sampler)"
"""Where a sample taken inside the handler (its own CPU time) is counted."""
ASLEEP = "(the event loop asleep: other threads' CPU)"
"""Where a sample that found the main thread in the selector's `select` is counted: asleep
in `epoll_wait`, it used no CPU; another thread did (the signal woke the loop to run the
handler)."""


def _code_name(code: CodeType) -> str:
    path = code.co_filename
    for marker in ("site-packages/", "/lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = path.removeprefix(_ROOT)
    return f"{code.co_name} ({path})"


_ROOT = str(Path(__file__).resolve().parents[2]) + os.sep
"""The checkout's root: `gateway/…` names are relative to it."""


class Sampler:
    def __init__(self) -> None:
        self.stacks: Counter[tuple[str, ...]] = Counter()
        self._names: dict[CodeType, str] = {}
        """A name per code object, made once (the handler runs a thousand times a second)."""

    def on_signal(self, _signum: int, frame: FrameType | None) -> None:
        names, known = [], self._names
        while frame is not None:
            code = frame.f_code
            if code is _HANDLER:  # a signal that came while the handler ran: its own cost
                names = [SELF]
                break
            name = known.get(code)
            if name is None:
                name = known[code] = _code_name(code)
            names.append(name)
            frame = frame.f_back
        self.stacks[tuple(reversed(names))] += 1

    def write(self, path: Path) -> None:
        """The stacks to `path`, then the shares to `path`.top; each file appears whole (a
        reader waiting for `.top` never reads it half written)."""
        from gateway.storage import atomic_write

        atomic_write(path, "".join(f"{';'.join(stack)} {count}\n"
                                   for stack, count in self.stacks.items()).encode(), 0o644)
        total = sum(self.stacks.values()) or 1
        modules: Counter[str] = Counter()
        functions: Counter[str] = Counter()
        for stack, count in self.stacks.items():
            inner = ASLEEP if _asleep(stack) else next(
                (name for name in reversed(stack) if "(gateway/" in name), stack[-1])
            functions[inner] += count
            modules[inner.split("(", 1)[1].rstrip(")") if "(" in inner[1:] else inner] += count
        lines = [f"{total} samples"]
        for title, counts in (("by module", modules), ("by function", functions)):
            lines.append(f"-- {title} (the innermost gateway/ frame)")
            lines += [f"{100 * n / total:5.1f} %  {name}" for name, n in counts.most_common(30)]
        atomic_write(Path(f"{path}.top"), ("\n".join(lines) + "\n").encode(), 0o644)


_HANDLER = Sampler.on_signal.__code__


def _asleep(stack: tuple[str, ...]) -> bool:
    """The stack of a main thread waiting in the event loop's selector."""
    return bool(stack) and stack[-1].startswith("select (") and "selectors.py" in stack[-1]


def start(spec: str) -> None:
    begin, seconds, path = spec.split(",", 2)
    sampler = Sampler()
    signal.signal(signal.SIGPROF, sampler.on_signal)

    def control() -> None:
        # not this thread: a SIGPROF that lands in its sleep wakes it to take the GIL for the
        # handler's flag, each time (with the main thread busy, the write came 10 s late)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPROF})
        time.sleep(float(begin))
        signal.setitimer(signal.ITIMER_PROF, INTERVAL, INTERVAL)
        time.sleep(float(seconds))
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        sampler.write(Path(path))

    threading.Thread(target=control, name="sampler", daemon=True).start()


def main() -> int:
    spec = os.environ.get("ROOMWARDEN_SAMPLE")
    if spec:
        start(spec)
    from gateway.cli import main as roomwarden
    return roomwarden(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
