"""Private state on disk: files and directories only the gateway's user can read, whatever the
umask, and the one place SQLite databases are opened and tuned.

Everything that holds configs (with panel password hashes), keys, the alarm journal, the
outbox, the ingest's stores or its dead letters is created with mode 0600 (directories 0700)
by the calls here. `os.open(..., mode)` alone is not enough: the umask only ever removes bits,
so a umask of 000 would leave a default 0644 file world-readable — each file is `fchmod`ed to
its mode right after it is created, and an existing file of ours with wider bits is narrowed
when it is opened. Nothing here is group-readable: the only group-shared file of the gateway
is the control socket (0660, `gateway.control`), which is not made here.

SQLite (`open_sqlite`; `open_sqlite_readonly` for a reader beside a running writer): WAL
mode, `isolation_level=None` (transactions are explicit), one connection shared by threads
under the caller's lock. The database file is created 0600 before SQLite opens it; SQLite gives
its `-wal` and `-shm` files the database's mode. `busy_timeout`: how long a statement waits for
another connection's lock before it fails with `database is locked` (SQLite's default, 5 s,
unless told: a connection used on the event loop must be told far less — a technician's
`sqlite3` session holding a write transaction on the alarm journal held every round of the
rules 10 s, the liveness audit). Durability is the caller's choice, named at each call
(`synchronous`):

- alarm journal (gateway): FULL. It is the ISA-18.2 record (who acknowledged what, when) and
  holds the event sequence the outbox continues; both must survive a power cut, and the events
  of the seconds before one (mains failed, UPS on battery, battery low) are the ones an
  investigation needs. It commits only when an alarm changes, so FULL costs one fsync per
  evaluation cycle that changed an alarm: measured 3.6 ms median, 60 ms p99 on the development
  VM's ext4 under load (NORMAL: 0.02 ms). While the gateway runs, that commit (and its fsync,
  and any wait for another connection's lock) happens on the journal's writer thread
  (gateway.alarms.journal_writer), as the outbox's does, never on the event loop.
- uplink outbox (gateway): FULL (see gateway.uplink.outbox: batched, at most one commit a
  second plus one per alarm event).
- duplicate keys (ingest): FULL: a key lost to a power cut lets a redelivery be written twice.
- point catalogs (ingest): FULL: rare writes; a lost catalog holds that gateway's batches back.
- delivery watermarks (ingest, gateway.ingest.watermark) and operator command ids (gateway,
  gateway.operator.replay): FULL, for the reasons their docstrings give (a watermark must not
  move forward past what the database holds; a used command id must not become new again).
- central incident records (ingest, gateway.ingest.incidents): FULL: committed before the
  ingest acknowledges the chunks (an acknowledged chunk is not sent again).
- series budget (ingest, gateway.ingest.budget): FULL: a commit only when a write admitted new
  keys; a key lost to a power cut would let a gateway past its cap by that many.
- readers: the panel's journal queries (gateway.alarms.journal_query) open the journal
  `query_only` (NORMAL, nothing to make durable); `roomwarden incident --central` opens the
  incident store with `open_sqlite_readonly`.

In WAL mode NORMAL skips the fsync at commit: it survives a process crash, but a power cut takes
back whatever the kernel had not yet written of the WAL (up to its writeback delay, about 30 s
on Linux). For the journal that would lose the last alarm changes and acknowledgements and
reuse event sequence numbers that the outbox (FULL) already sent.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Literal

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
MEMORY = ":memory:"

Synchronous = Literal["NORMAL", "FULL", "EXTRA"]


def private_dir(path: Path) -> Path:
    """Create `path` and any missing parents with mode 0700 (existing directories are left as
    they are: they may be /var/lib or a systemd StateDirectory). Returns `path`."""
    missing: list[Path] = []
    here = path
    while not here.exists() and here != here.parent:
        missing.append(here)
        here = here.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=PRIVATE_DIR)
            os.chmod(directory, PRIVATE_DIR)  # mkdir's mode is narrowed by the umask only
    return path


def narrow_tree(root: Path) -> int:
    """Directories under `root` (itself included) to 0700 and files to 0600 where wider and
    ours — what an older version wrote with the umask's modes (configs with password hashes
    were 0644); symlinks are not followed. Returns how many were narrowed."""
    narrowed = 0
    for top, _dirs, files in os.walk(root, followlinks=False):
        for path, mode in [(top, PRIVATE_DIR),
                           *((os.path.join(top, f), PRIVATE_FILE) for f in files)]:
            with contextlib.suppress(OSError):
                info = os.lstat(path)
                if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
                    continue
                if stat.S_IMODE(info.st_mode) & ~mode:
                    os.chmod(path, mode)
                    narrowed += 1
    return narrowed


def _narrow(fd: int, mode: int) -> None:
    """Give the open file `mode` if it has any bit beyond it (and is ours to change)."""
    info = os.fstat(fd)
    if stat.S_IMODE(info.st_mode) & ~mode and info.st_uid == os.geteuid():
        os.fchmod(fd, mode)


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                 mode: int = PRIVATE_FILE) -> int:
    """`os.open` that leaves the file at `mode` (0600) whatever the umask; never follows a
    symlink at `path`. Returns the file descriptor."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        _narrow(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def append_private(path: Path) -> BinaryIO:
    """`path` opened for appending bytes, created 0600."""
    return os.fdopen(open_private(path), "ab")


def write_new_private(path: Path, data: bytes, mode: int = PRIVATE_FILE) -> None:
    """Create `path` (it must not exist: FileExistsError), write `data`, fsync."""
    write_fsync_close(open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), data)


def write_fsync_close(fd: int, data: bytes) -> None:
    """Write all of `data` to the open `fd`, fsync it, and close it (also on an error)."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes | Iterable[bytes], mode: int = PRIVATE_FILE) -> None:
    """Replace `path` with `data` (mode 0600 unless told; bytes, or pieces written as they
    come) so that a crash leaves the old or the new file, whole: a temporary file is written,
    fsynced, renamed, the directory fsynced."""
    fd, tmp = _new_temporary(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            if isinstance(data, bytes):
                handle.write(data)
            else:
                handle.writelines(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def temporary_of(name: str) -> str | None:
    """The name of the file a temporary of `atomic_write` named `name` was to replace (None if
    `name` is not such a temporary): for a store that removes the temporaries a killed process
    left beside its files."""
    if name.startswith(".") and name.endswith(".tmp") and len(name) > 16 and name[-15] == ".":
        target, token = name[1:-15], name[-14:-4]
        if target and all(c in "0123456789abcdef" for c in token):
            return target
    return None


def _new_temporary(path: Path) -> tuple[int, str]:
    """A new, private file beside `path` for `atomic_write` (what `tempfile.mkstemp` does; the
    gateway writes one each minute, and `tempfile` would keep `shutil`, `bz2` and `lzma` loaded
    in it: ~1 MiB). Its name is `.<name>.<10 hex digits>.tmp` (`temporary_of`)."""
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{os.urandom(5).hex()}.tmp")
        try:
            return open_private(Path(tmp), os.O_RDWR | os.O_CREAT | os.O_EXCL), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def open_sqlite(path: str | os.PathLike[str], *, synchronous: Synchronous | str,
                journal_size_limit: int | None = None,
                busy_timeout: float = 5.0) -> sqlite3.Connection:
    """A connection to the database at `path` (created 0600 in an existing directory;
    `:memory:` too), in WAL mode with the given durability (see the module docstring for each
    store's choice). sqlite3.Error if the file is not a usable database or cannot be created
    (the connection is closed then)."""
    if synchronous not in ("NORMAL", "FULL", "EXTRA"):
        raise ValueError("synchronous must be NORMAL, FULL or EXTRA")
    name = os.fspath(path)
    if name != MEMORY:
        target = Path(name)
        try:
            os.close(open_private(target, os.O_RDWR | os.O_CREAT))
            for suffix in ("-wal", "-shm", "-journal"):  # left by an older, laxer version
                with contextlib.suppress(FileNotFoundError):
                    os.close(open_private(Path(name + suffix), os.O_RDONLY))
        except OSError as exc:
            raise sqlite3.OperationalError(f"cannot open {name}: {exc.strerror or exc}"
                                           ) from exc
    conn = sqlite3.connect(name, isolation_level=None, check_same_thread=False,
                           timeout=busy_timeout)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        if journal_size_limit is not None:
            conn.execute(f"PRAGMA journal_size_limit={int(journal_size_limit)}")
    except BaseException:
        conn.close()
        raise
    return conn


def open_sqlite_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection to the existing database at `path` (SQLite `mode=ro`: nothing is
    created or written; a reader beside a running writer, e.g. `roomwarden incident --central`
    beside the ingest: WAL lets it read while the writer commits). sqlite3.Error if the file
    is missing or not a usable database."""
    return sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True,
                           isolation_level=None, check_same_thread=False)
