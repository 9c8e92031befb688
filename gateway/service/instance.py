"""One gateway per state directory: `roomwarden run` claims its state directory (an exclusive
lock) and its control socket before it opens anything in either.

Why: a second gateway started on the same state directory (a technician's `roomwarden run` as
root while the service runs: both default to /var/lib/roomwarden) used to start fully. Both
numbered alarm events from the same last sequence number into one journal, marked each
other's open incidents interrupted, shared the outbox and the MQTT client id, and the second
one unlinked the first one's live control socket (liveness audit L2). Now the second one
refuses to start, says which directory and which process holds it, exits non-zero, and has
touched nothing.

The lock is `flock(LOCK_EX | LOCK_NB)` on `<state dir>/gateway.lock`, whose content is the
holder's PID (for the refusal message and for people; the lock, not the file, is what counts:
a file left behind by a killed gateway holds nothing, since the kernel drops a process's locks
when it dies). It is held until `run` returns, and is not inherited by child processes (the
config check's child). Only `run` takes it: the commands that read a running gateway's state
directory (`roomwarden incident …` reads the incident store; `status`, `config apply` and the
operator commands go through the control socket or MQTT) never do, so they keep working while
it runs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from types import TracebackType

from gateway.control import ControlSocketInUse, default_socket_path, refuse_if_live
from gateway.storage import open_private

__all__ = ["ControlSocketInUse", "InstanceRefused", "StateDirInUse", "StateLock", "claim",
           "lock_state_dir"]

LOCK_NAME = "gateway.lock"


class InstanceRefused(RuntimeError):
    """Another gateway holds the state directory or listens on the control socket."""


class StateDirInUse(InstanceRefused):
    def __init__(self, state_dir: Path, holder: str) -> None:
        super().__init__(
            f"the state directory {state_dir} is in use by another gateway ({holder}, "
            f"holding {state_dir / LOCK_NAME}): stop that one first, or give this one a "
            "state directory of its own (--state-dir)")
        self.state_dir = state_dir


class StateLock(contextlib.AbstractContextManager["StateLock"]):
    """The held lock of one state directory; released by `release` (or leaving `with`)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def name_holder(self) -> None:
        """Write this process's PID into the lock file (for another one's refusal)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the lock holds all the same; a refusal then names no PID

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def lock_state_dir(state_dir: Path) -> StateLock:
    """Take `state_dir`'s lock (creating the directory and the lock file if need be);
    StateDirInUse if another process holds it. A refusal reads the lock file, writes
    nothing."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LOCK_NAME
    try:
        fd = open_private(path, os.O_RDWR | os.O_CREAT)  # 0600, like the rest of the directory
    except OSError as exc:
        raise InstanceRefused(f"cannot lock the state directory {state_dir}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise StateDirInUse(state_dir, _holder(path)) from None
        raise InstanceRefused(f"cannot lock the state directory {state_dir}: {exc}") from exc
    return StateLock(path, fd)


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        text = ""
    return f"PID {text}" if text.isdigit() else "PID unknown"


def claim(state_dir: Path, control: Path | None) -> StateLock:
    """What `roomwarden run` does first: the state directory's lock, then a check that no
    gateway listens on the control socket (`control`, None: the default for `state_dir`;
    gateway.control.refuse_if_live). InstanceRefused (with the message to show) if either is
    taken; nothing is written then."""
    lock = lock_state_dir(state_dir)
    try:
        refuse_if_live(control or default_socket_path(state_dir))
    except ControlSocketInUse as exc:
        lock.release()
        raise InstanceRefused(str(exc)) from None
    lock.name_holder()
    return lock
