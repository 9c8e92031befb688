"""Reading a config file within a size limit, without waiting on anything that is not a regular
file (`read_bounded`), and the SHA-256 of what it reads (`file_sha256`).

Apart from the YAML reader (gateway.config.yamlfile re-exports it): the config store reads
configs with it in every running gateway, which never reads YAML itself (issue 15).
"""

from __future__ import annotations

import hashlib
from pathlib import Path


class FileTooLarge(ValueError):
    """A config file past its size limit."""


class NotARegularFile(ValueError):
    """A config path that is a FIFO, a device, a socket or a directory."""


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes`, read without waiting on anything:
    a FIFO, a device (`/dev/zero`) or a socket is refused before a byte is read (opened
    non-blocking, judged by `fstat`), so is a file `fstat` says is larger ("file is N bytes;
    the limit is M"), and at most `max_bytes` + 1 bytes are read whatever the file claims or
    grows to ("file is larger than the limit of M bytes": it grew, or its size is not known
    beforehand, as in /proc). OSError as the system gives it (missing, a symlink loop …)."""
    import os
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb", buffering=0) as file:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a directory" if stat.S_ISDIR(mode) else "a named pipe" if
                    stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or
                    stat.S_ISBLK(mode) else "not a regular file")
            raise NotARegularFile(f"is {kind}, not a regular file")
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise FileTooLarge(f"file is {size} bytes; the limit is {max_bytes}"
                               f"{_in_units(max_bytes)}")
        chunks, held = [], 0
        while held <= max_bytes:
            chunk = file.read(min(1 << 20, max_bytes + 1 - held))
            if not chunk:
                break
            chunks.append(chunk)
            held += len(chunk)
    if held > max_bytes:
        raise FileTooLarge(f"file is larger than the limit of {max_bytes} bytes"
                           f"{_in_units(max_bytes)}")
    return b"".join(chunks)


def _in_units(size: int) -> str:
    """` (4 MiB)` for 4194304, ` (512 KiB)` for 524288; '' below a KiB."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f" ({size / scale:.4g} {unit})"
    return ""


def file_sha256(path: Path, max_bytes: int) -> str | None:
    """The SHA-256 (hex) of a file `read_bounded` reads; None if it cannot be read so."""
    try:
        return hashlib.sha256(read_bounded(path, max_bytes)).hexdigest()
    except (OSError, ValueError):
        return None
